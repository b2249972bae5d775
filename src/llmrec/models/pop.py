"""Pop: every user gets the items ranked by how often they occur in the training data.

Many items share a count, so Pop is where the evaluator's pessimistic tie rule matters most."""

from __future__ import annotations

import numpy as np
import torch

from llmrec.models.base import HistoryBatch, Params, Recommender


class PopParams(Params):
    pass


class Pop(Recommender):
    name = "pop"
    Params = PopParams

    def fit(self, split, **kw):
        self.n_items, self.n_users = split.n_items, split.n_users
        items = np.concatenate([s for s in split.train if len(s)]) if split.train else np.zeros(0, np.int64)
        self.counts = torch.from_numpy(np.bincount(items, minlength=self.n_items).astype(np.float32))
        return self

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(batch), -1)

    def state_tensors(self):
        return {"counts": self.counts}

    def load_state_tensors(self, t):
        self.counts = t["counts"]
