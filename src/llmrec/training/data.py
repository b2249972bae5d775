"""Tensor helpers that build training batches without per-example Python loops.

Conventions: inside a network item ``i`` (0-based in llmrec) is token ``i + 1``; token 0 is padding
(``HistoryBatch.padded(shift=1)`` does the same at scoring time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmrec.utils.padding import pad_rows


def right_aligned(seqs: Sequence[np.ndarray], max_len: int, shift: int = 1) -> torch.Tensor:
    """(U, max_len) long tensor: the last ``max_len`` items of each sequence (+``shift``), left-padded with 0."""
    return _aligned(seqs, max_len, shift, right=True)


def left_aligned(seqs: Sequence[np.ndarray], max_len: int, shift: int = 1) -> torch.Tensor:
    """(U, max_len) long tensor: the last ``max_len`` items of each sequence (+``shift``), right-padded with 0
    (for recurrent models, whose state must not run through padding first)."""
    return _aligned(seqs, max_len, shift, right=False)


def _aligned(seqs, max_len: int, shift: int, right: bool) -> torch.Tensor:
    return torch.from_numpy(pad_rows(seqs, max_len, shift=shift, align="right" if right else "left")[0])


def windows(seqs: Sequence[np.ndarray], size: int, stride: int | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every sequence cut, from its end, into windows of ``size`` items whose ends are ``stride`` items apart
    (default ``size - 1``: windows that overlap by one item). Each window's last ``keep`` next-item targets are
    the ones no later window holds, so that every target (every item but a sequence's first) is kept exactly
    once, with at least ``size - stride`` items of context when the sequence has them; windows shorter than two
    items are dropped. Returns the windows, per window the index of its sequence, and ``keep``."""
    step = size - 1 if stride is None else stride
    if size < 2 or not 1 <= step <= size - 1:
        raise ValueError(f"need window size >= 2 and 1 <= stride <= size - 1, got size {size}, stride {stride}")
    out, owner, keep = [], [], []
    for u, s in enumerate(seqs):
        end = len(s)
        while end >= 2:
            start = max(0, end - size)
            out.append(np.asarray(s[start:end]))
            owner.append(u)
            keep.append(end - 1 if start == 0 else step)  # a full window holds size - 1 >= step targets
            if start == 0:
                break
            end -= step
    return out, np.asarray(owner, dtype=np.int64), np.asarray(keep, dtype=np.int64)


def seq_lengths(seqs: Sequence[np.ndarray]) -> np.ndarray:
    return np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))


def user_item_pairs(seqs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(users, items) of every training interaction, as two long tensors."""
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    users = np.repeat(np.arange(len(seqs)), lens)
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs if len(s)]) if lens.sum() else np.zeros(0, np.int64)
    return torch.from_numpy(users), torch.from_numpy(items)


def pair_keys(users: torch.Tensor, items: torch.Tensor, n_items: int) -> torch.Tensor:
    """Sorted unique ``user * n_items + item`` keys (for rejecting sampled negatives the user has seen)."""
    return torch.unique(users.long() * n_items + items.long())


def uniform_negatives(
    shape: tuple[int, ...],
    n_items: int,
    generator: torch.Generator,
    users: torch.Tensor | None = None,
    seen_keys: torch.Tensor | None = None,
    rounds: int = 8,
) -> torch.Tensor:
    """Items drawn uniformly from ``[0, n_items)``; with ``users`` (broadcastable to ``shape``) and
    ``seen_keys`` (from :func:`pair_keys`) draws that hit an item of the user's training data are redrawn
    (up to ``rounds`` times; a user who has seen almost every item may keep a seen one)."""
    neg = torch.randint(0, n_items, shape, generator=generator)
    if users is None or seen_keys is None or seen_keys.numel() == 0:
        return neg
    u = users.long().expand(shape) if users.dim() else users.long()
    last = seen_keys.numel() - 1
    for _ in range(rounds):
        keys = u * n_items + neg
        bad = seen_keys[torch.searchsorted(seen_keys, keys).clamp(max=last)] == keys  # seen_keys is sorted
        nb = int(bad.sum())
        if nb == 0:
            break
        neg[bad] = torch.randint(0, n_items, (nb,), generator=generator)
    return neg


def crop_padding(x: torch.Tensor, pad: int = 0, left: bool = True) -> torch.Tensor:
    """Drop the columns that are padding in every row: leading ones of a right-aligned (B, L) batch
    (``left=True``), trailing ones of a left-aligned batch (``left=False``). At least one column is kept."""
    nonpad = (x != pad).any(0)
    if not bool(nonpad.any()):
        return x[:, -1:] if left else x[:, :1]
    if left:
        return x[:, int(nonpad.long().argmax()) :]
    return x[:, : int(nonpad.nonzero().max()) + 1]


class EpochBatches:
    """A sized iterable of one epoch's batches (so the progress bar can show an ETA).

    ``make(idx) -> dict`` builds the batch of the rows ``idx``; it is called lazily, in order. With
    ``lengths`` (per-row sequence lengths) rows are bucketed: the random permutation is cut into windows of
    ``bucket`` batches, each window is sorted by length and cut into batches, and the batch order is
    shuffled -- batches of similar lengths waste little compute on padding, and the data order stays random."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, make,
                 lengths: torch.Tensor | None = None, bucket: int = 32):
        perm = torch.randperm(n, generator=generator)
        if lengths is None or n <= batch_size:
            self.chunks = list(perm.split(batch_size))
        else:
            chunks = []
            for win in perm.split(batch_size * bucket):
                order = torch.sort(lengths[win], stable=True).indices
                chunks.extend(win[order].split(batch_size))
            shuffle = torch.randperm(len(chunks), generator=generator)
            self.chunks = [chunks[i] for i in shuffle.tolist()]
        self.make = make

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self):
        for idx in self.chunks:
            yield self.make(idx)
