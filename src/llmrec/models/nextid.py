"""NextId: a sanity model that reads item ids as if they meant something.

It ranks the ids just above the largest id in the history first (max+1, max+2, ...), then everything else
(highest id first). On the P5 files, whose items are numbered in order of first appearance, this "model"
beats published LLM recommenders; with randomly remapped ids it must fall to noise. Keep it in every
comparison table as the id-leak detector."""

from __future__ import annotations

import torch

from llmrec.models.base import HistoryBatch, Params, Recommender


class NextIdParams(Params):
    pass


class NextId(Recommender):
    name = "nextid"
    Params = NextIdParams

    def fit(self, split, **kw):
        self.n_items, self.n_users = split.n_items, split.n_users
        return self

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        m = torch.tensor([int(h.max()) if len(h) else -1 for h in batch.histories], dtype=torch.float32)
        ids = torch.arange(self.n_items, dtype=torch.float32).unsqueeze(0)
        d = ids - m.unsqueeze(1)  # distance above the max id
        n = float(self.n_items)
        # above the max: closer is better; at or below it: far behind, higher ids first
        return torch.where(d > 0, -d, -2 * n + d)
