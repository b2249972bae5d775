"""Padding a batch of variable-length integer sequences into one matrix: the one implementation behind item
histories, sessions and token ids (numpy only, vectorised)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_rows(seqs: Sequence, width: int | None = None, *, pad: int = 0, shift: int = 0,
             align: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """``(len(seqs), width)`` int64 matrix of the sequences (+``shift``; padding is not shifted) and the
    (len(seqs),) lengths kept.

    ``width=None``: the longest sequence's length (at least 1). A longer sequence keeps its *last* ``width``
    items. ``align="left"``: a row starts at column 0, padding after it; ``"right"``: a row ends at the last
    column, padding before it (as SASRec-style models expect)."""
    if align not in ("left", "right"):
        raise ValueError(f"align must be 'left' or 'right', got {align!r}")
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    if width is None:
        width = max(1, int(lens.max()) if len(lens) else 1)
    take = np.minimum(lens, width)
    out = np.full((len(seqs), width), pad, dtype=np.int64)
    if take.sum() == 0:
        return out, take
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs if len(s)])
    ends = np.cumsum(lens)
    rows = np.repeat(np.arange(len(seqs)), take)
    j = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)  # 0..take-1 within each row
    src = np.repeat(ends - take, take) + j
    cols = np.repeat(width - take, take) + j if align == "right" else j
    out[rows, cols] = flat[src] + shift
    return out, take
