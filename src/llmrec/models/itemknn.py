"""ItemKNN: item-item cosine similarity on co-occurrence (Sarwar et al. 2001; RecBole's ItemKNN).

sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink), where U_i is the set of users (or sessions,
when the split has them) whose training data contain item i. Each item keeps its ``k`` most similar
neighbours; among neighbours of equal similarity at the cut, the lower item index is kept (a fixed rule: with
``data.id_order: random`` the item numbering, and so this choice, follows ``data.id_seed``). A user's score for item j is the sum of sim(i, j) over the distinct items i of the history
(``recent`` > 0 uses only the last ``recent`` items; ``position_decay`` < 1 weights the item t steps from the
end by decay**t)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from llmrec.models.base import HistoryBatch, Params, Recommender


def _top_k(cols: np.ndarray, v: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest similarities, the lower item index first among equal ones (so the kept
    neighbours depend on the similarities and the item numbering only, never on the storage order)."""
    kth = np.partition(v, len(v) - k)[len(v) - k]  # the k-th largest similarity
    cand = np.flatnonzero(v >= kth)  # every neighbour that can be kept (all ties at the boundary included)
    return cand[np.lexsort((cols[cand], -v[cand]))[:k]]


class ItemKNNParams(Params):
    k: int = Field(100, ge=1, description="neighbours kept per item")
    shrink: float = Field(0.0, ge=0, description="added to the cosine's denominator")
    recent: int = Field(0, ge=0, description="use only the last `recent` history items; 0 = all")
    position_decay: float = Field(1.0, gt=0, le=1, description="weight decay**t of the item t steps from the end; 1 = none")


class ItemKNN(Recommender):
    name = "itemknn"
    Params = ItemKNNParams

    def fit(self, split, **kw):
        self.n_items, self.n_users = split.n_items, split.n_users
        groups = split.train if split.train_sessions is None else [s for us in split.train_sessions for s in us]
        rows = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
        cols = np.concatenate([g for g in groups if len(g)]) if groups else np.zeros(0, np.int64)
        X = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(groups), self.n_items))
        X.sum_duplicates()
        X.data[:] = 1.0  # binary: a repeated item counts once
        co = (X.T @ X).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        norm = np.sqrt(np.asarray(X.sum(axis=0)).ravel())
        co = co.tocoo()
        vals = co.data / (norm[co.row] * norm[co.col] + self.params.shrink)
        self._set_topk(sp.csr_matrix((vals, (co.row, co.col)), shape=co.shape))
        return self

    def _set_topk(self, S: sp.csr_matrix) -> None:
        k = self.params.k
        idx = np.zeros((self.n_items, k), dtype=np.int64)
        val = np.zeros((self.n_items, k), dtype=np.float32)  # unused slots: weight 0 on item 0
        for i in range(self.n_items):
            a, b = S.indptr[i], S.indptr[i + 1]
            cols, v = S.indices[a:b], S.data[a:b]
            if len(v) > k:
                top = _top_k(cols, v, k)
                cols, v = cols[top], v[top]
            idx[i, : len(cols)] = cols
            val[i, : len(cols)] = v
        self.nbr_idx = torch.from_numpy(idx)
        self.nbr_val = torch.from_numpy(val)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """scores[b, j] = sum over distinct history items i of weight(i) * sim(i, j), over i's kept neighbours."""
        r, d = self.params.recent, self.params.position_decay
        hs = [np.asarray(h[-r:] if r > 0 else h, dtype=np.int64) for h in batch.histories]
        lens = np.array([len(h) for h in hs], dtype=np.int64)
        out = torch.zeros((len(hs), self.n_items), dtype=torch.float32)
        if lens.sum() == 0:
            return out
        age = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)  # position within the row
        age = np.repeat(lens, lens) - 1 - age  # 0 for the most recent item
        keys = np.repeat(np.arange(len(hs)), lens) * self.n_items + np.concatenate(hs)
        # a repeated item counts once, with its largest weight: its most recent occurrence (decay <= 1), the
        # smallest age -- sort by (row, item), then age, and keep each key's first entry (no dense B x N pass)
        order = np.lexsort((age, keys))
        k = keys[order]
        first = order[np.r_[True, k[1:] != k[:-1]]]
        rows = torch.from_numpy(keys[first] // self.n_items)
        items = torch.from_numpy(keys[first] % self.n_items)
        w = torch.from_numpy((d ** age[first]).astype(np.float32))
        flat = (rows.unsqueeze(1) * self.n_items + self.nbr_idx[items]).reshape(-1)
        vals = (w.unsqueeze(1) * self.nbr_val[items]).reshape(-1)
        out.view(-1).index_add_(0, flat, vals)
        return out

    def state_tensors(self):
        return {"nbr_idx": self.nbr_idx, "nbr_val": self.nbr_val}

    def load_state_tensors(self, t):
        self.nbr_idx, self.nbr_val = t["nbr_idx"], t["nbr_val"]
