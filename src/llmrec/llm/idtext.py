"""Users and items written as ID words (``user_12``, ``item_345``) for text-ID recommenders (GenRec).

:class:`IdText` tokenises every ID word once, on its own (``" item_345"`` with a leading space, as it reads
inside a sentence), and assembles encoder inputs from the per-word token lists, so that it always knows which
token belongs to which user or item (Eq. 2 of GenRec adds a user-ID or item-ID embedding to exactly those
tokens). An input is

    [BEG]  user_u  item_a  item_b ... ([MASK])  [END]

with three aligned id arrays: ``input_ids`` (text tokens), ``user_ids`` (user index + 1 on the user's tokens,
else 0) and ``item_ids`` (item index + 1 on an item's tokens, else 0). The [MASK] token, [BEG]/[END] and
every non-ID token carry 0 (= no ID embedding; index 0 of both tables is a zero vector). Inputs longer than
``max_len`` tokens drop the **oldest** items first; [BEG], the user, [MASK] and [END] are always kept.

Targets (the decoder side) are an item's tokens followed by [END]; :meth:`IdText.trie` is the prefix tree of
all item token sequences that constrains beam search to real items (:mod:`llmrec.llm.decoding`).

Item ``i`` (0-based index) is written ``item_<i+1>``, user ``u`` ``user_<u+1>``. With ``data.id_order:
original`` on the P5 files that is exactly the P5 numbering (index + 1 = P5 id); with ``random`` (the default)
the numbers are a seeded permutation and carry no sequence order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from llmrec.llm.decoding import Trie
from llmrec.utils.padding import pad_rows


def item_word(i: int, prefix: str = "item_") -> str:
    return f"{prefix}{int(i) + 1}"


def user_word(u: int, prefix: str = "user_") -> str:
    return f"{prefix}{int(u) + 1}"


def id_words(n_users: int, n_items: int, user_prefix: str = "user_", item_prefix: str = "item_") -> list[str]:
    """Every ID word with a leading space (what a tiny tokenizer is trained on)."""
    return [" " + user_word(u, user_prefix) for u in range(n_users)] + [" " + item_word(i, item_prefix) for i in range(n_items)]


def special_ids(tokenizer) -> dict[str, int]:
    """[BEG], [END], [MASK], [PAD] ids of a BART-style (<s> </s> <mask> <pad>) or BERT-style tokenizer."""
    beg = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    out = {"beg": beg, "end": end, "mask": tokenizer.mask_token_id, "pad": tokenizer.pad_token_id}
    missing = [k for k, v in out.items() if v is None]
    if missing:
        raise ValueError(f"the tokenizer has no {', '.join(missing)} token (GenRec needs begin, end, mask and pad tokens)")
    return {k: int(v) for k, v in out.items()}


@dataclass
class Encoded:
    """A padded batch of encoder inputs."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    user_ids: torch.Tensor  # (B, L) user index + 1 on user tokens, else 0
    item_ids: torch.Tensor  # (B, L) item index + 1 on item tokens, else 0
    truncated: int = 0  # rows that lost old items to max_len

    def to(self, device) -> Encoded:
        return Encoded(self.input_ids.to(device), self.attention_mask.to(device), self.user_ids.to(device),
                       self.item_ids.to(device), self.truncated)


class IdText:
    """Per-word tokenisation of the ID vocabulary and assembly of encoder inputs and decoder targets."""

    def __init__(self, tokenizer, n_users: int, n_items: int, *, max_len: int = 512, user_prefix: str = "user_",
                 item_prefix: str = "item_"):
        self.tokenizer = tokenizer
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.max_len = int(max_len)
        self.user_prefix, self.item_prefix = user_prefix, item_prefix
        self.sp = special_ids(tokenizer)
        self.item_tokens: list[list[int]] = self._tokenize([" " + item_word(i, item_prefix) for i in range(self.n_items)])
        self._user_cache: dict[int, list[int]] = {}
        if self.max_len < 4 + max((len(t) for t in self.item_tokens), default=1) + 1:
            raise ValueError(f"max_len {self.max_len} cannot hold [BEG] user item [MASK] [END]")
        seqs = {tuple(t) for t in self.item_tokens}
        if len(seqs) != self.n_items:
            raise ValueError("two items tokenise to the same token sequence; the tokenizer cannot tell them apart")

    def _tokenize(self, words: list[str]) -> list[list[int]]:
        out = []
        for s in range(0, len(words), 4096):
            enc = self.tokenizer(words[s: s + 4096], add_special_tokens=False)["input_ids"]
            out.extend([list(map(int, e)) for e in enc])
        bad = [w for w, e in zip(words, out) if not e or any(t == self.tokenizer.unk_token_id for t in e)]
        if bad:
            raise ValueError(f"the tokenizer cannot spell {bad[0]!r} (unknown or empty tokens)")
        return out

    def user_tokens(self, u: int) -> list[int]:
        u = int(u)
        tok = self._user_cache.get(u)
        if tok is None:
            tok = self._tokenize([" " + user_word(u, self.user_prefix)])[0]
            self._user_cache[u] = tok
        return tok

    # -- encoder inputs ---------------------------------------------------------------------------
    def encode_one(self, user: int, items: Sequence[int], mask_at: int | None = None, append_mask: bool = False):
        """(ids, user_ids, item_ids, truncated) of one input.

        ``mask_at``: the index in ``items`` replaced by one [MASK] token (pretraining); ``append_mask``: [MASK]
        after the last item (finetuning / inference). ``user`` < 0 = an unknown user (no user word)."""
        sp = self.sp
        head_ids, head_u = [sp["beg"]], [0]
        if user is not None and int(user) >= 0:
            ut = self.user_tokens(user)
            head_ids += ut
            head_u += [int(user) + 1] * len(ut)
        tail = 1 + int(append_mask)  # [MASK]? [END]
        budget = self.max_len - len(head_ids) - tail
        # walk from the newest item back, keeping what fits
        parts: list[tuple[list[int], int]] = []
        used, truncated = 0, False
        for j in range(len(items) - 1, -1, -1):
            if mask_at is not None and j == mask_at:
                piece, iid = [sp["mask"]], 0
            else:
                piece, iid = self.item_tokens[int(items[j])], int(items[j]) + 1
            if used + len(piece) > budget:
                truncated = True
                break
            parts.append((piece, iid))
            used += len(piece)
        ids, uids, iids = list(head_ids), list(head_u), [0] * len(head_ids)
        for piece, iid in reversed(parts):
            ids += piece
            uids += [0] * len(piece)
            iids += [iid] * len(piece)
        if append_mask:
            ids.append(sp["mask"])
            uids.append(0)
            iids.append(0)
        ids.append(sp["end"])
        uids.append(0)
        iids.append(0)
        return ids, uids, iids, truncated

    def first_kept(self, user: int, items: Sequence[int], append_mask: bool = False) -> int:
        """Index of the oldest item that fits in ``max_len`` (pretraining masks an item at or after it)."""
        budget = self.max_len - 1 - (len(self.user_tokens(user)) if user is not None and int(user) >= 0 else 0)
        budget -= 1 + int(append_mask)
        used = 0
        for j in range(len(items) - 1, -1, -1):
            used += len(self.item_tokens[int(items[j])])
            if used > budget:
                return j + 1
        return 0

    def encode(self, users: Sequence[int], histories: Sequence[Sequence[int]], *, mask_at: Sequence[int | None] | None = None,
               append_mask: bool = True) -> Encoded:
        """A right-padded batch (attention_mask 0 on padding)."""
        rows = [self.encode_one(u, h, None if mask_at is None else mask_at[r], append_mask)
                for r, (u, h) in enumerate(zip(users, histories))]
        L = max(len(r[0]) for r in rows)
        B = len(rows)
        ids = torch.full((B, L), self.sp["pad"], dtype=torch.long)
        att = torch.zeros((B, L), dtype=torch.long)
        uid = torch.zeros((B, L), dtype=torch.long)
        iid = torch.zeros((B, L), dtype=torch.long)
        for r, (a, b, c, _) in enumerate(rows):
            n = len(a)
            ids[r, :n] = torch.tensor(a)
            att[r, :n] = 1
            uid[r, :n] = torch.tensor(b)
            iid[r, :n] = torch.tensor(c)
        return Encoded(ids, att, uid, iid, truncated=sum(int(r[3]) for r in rows))

    # -- decoder targets --------------------------------------------------------------------------
    def targets(self, items: Sequence[int], ignore_index: int = -100) -> torch.Tensor:
        """(B, T) labels: each item's tokens + [END], padded with ``ignore_index`` (not counted in the loss)."""
        seqs = [self.item_tokens[int(i)] + [self.sp["end"]] for i in items]
        return torch.from_numpy(pad_rows(seqs, pad=ignore_index)[0])

    def trie(self) -> Trie:
        return Trie(self.item_tokens, list(range(self.n_items)))

    def max_item_tokens(self) -> int:
        return max(len(t) for t in self.item_tokens)

    def token_stats(self) -> dict:
        lens = np.array([len(t) for t in self.item_tokens])
        return {"item_tokens_mean": float(lens.mean()), "item_tokens_max": int(lens.max()), "item_tokens_min": int(lens.min())}
