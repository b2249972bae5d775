"""The user-item interaction graph of a training split: co-occurrence and k-hop affinity.

``R`` is the binary (users x items) matrix of the training sequences (never validation or test items) and
``C = R^T R`` the item co-occurrence counts (how many users have both items; the diagonal is zeroed). Paths
user -> item -> user -> item are the user's **3-hop affinity**: ``C @ r_u`` counts, for every item, the paths of
length 3 from user ``u`` to it. The same counts from a set of *target* items give negatives *similar* to the
targets (co-purchased / co-watched), as PALR's "Recommend_Retrieval" candidate lists need.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


class ItemGraph:
    def __init__(self, train: Sequence[np.ndarray], n_items: int):
        rows = np.repeat(np.arange(len(train)), [len(s) for s in train])
        cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in train if len(s)] or [np.zeros(0, np.int64)])
        R = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(train), n_items))
        R.data[:] = 1.0  # duplicates (repeat consumption) count once
        R.sum_duplicates()
        R.data[:] = 1.0
        C = (R.T @ R).tocsr()
        C.setdiag(0)
        C.eliminate_zeros()
        self.R, self.C = R, C
        self.n_items = n_items
        self.popularity = np.asarray(R.sum(0)).ravel()

    def affinity(self, items: Sequence[int]) -> np.ndarray:
        """(n_items,) number of length-2 item->user->item paths from ``items`` (3-hop from their user)."""
        items = np.unique(np.asarray(items, dtype=np.int64))
        if len(items) == 0:
            return np.zeros(self.n_items, dtype=np.float32)
        return np.asarray(self.C[items].sum(0)).ravel()

    def top_related(self, items: Sequence[int], k: int, exclude: Sequence[int] = (), tie_break: np.ndarray | None = None) -> list[int]:
        """Up to ``k`` items with the most paths from ``items`` (ties by popularity), none in ``exclude``, none
        with zero paths."""
        if k <= 0:
            return []
        s = self.affinity(items).astype(np.float64)
        s = s + (self.popularity / (self.popularity.max() + 1.0) if tie_break is None else tie_break) * 1e-3 * (s > 0)
        ex = np.asarray(list(exclude) + list(items), dtype=np.int64)
        if len(ex):
            s[ex] = 0.0
        nz = np.flatnonzero(s > 0)
        if len(nz) == 0:
            return []
        top = nz[np.argsort(-s[nz], kind="stable")[:k]]
        return [int(i) for i in top]

    def similar_negatives(self, targets: Sequence[int], k: int, exclude: Sequence[int], rng: np.random.Generator,
                          pool_factor: int = 3) -> tuple[list[int], int]:
        """``k`` negatives similar to ``targets``: a random draw from the ``pool_factor * k`` items co-occurring
        most with them (none in ``exclude`` or ``targets``), padded with random items by popularity when the pool is
        short. Returns (negatives, how many came from the padding)."""
        pool = self.top_related(targets, pool_factor * k, exclude)
        if len(pool) > k:
            pool = [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
        out = list(pool)
        taken = set(out) | {int(x) for x in exclude} | {int(t) for t in targets}
        pad = 0
        if len(out) < k:
            avail = np.setdiff1d(np.arange(self.n_items), np.fromiter(taken, dtype=np.int64, count=len(taken)))
            if len(avail):
                p = self.popularity[avail] + 1.0
                extra = rng.choice(avail, size=min(k - len(out), len(avail)), replace=False, p=p / p.sum())
                out += [int(x) for x in extra]
                pad = len(extra)
        return out, pad
