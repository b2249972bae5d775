"""BPR-MF: matrix factorization trained with Bayesian Personalized Ranking (Rendle et al., UAI 2009).

A general (non-sequential) model: x̂_ui = <w_u, h_i>; the order of the history is ignored and a known user is
scored by their own embedding only.

Paper (§4-5): BPR-Opt = sum_{(u,i,j)} ln sigma(x̂_uij) - lambda ||Theta||^2 with x̂_uij = x̂_ui - x̂_uj (eq. for
BPR-Opt in §4.1), i an item of the user and j a uniformly drawn item the user has not seen, learned by
stochastic gradient descent with bootstrap sampling of triples. Defaults here: 64 factors, one negative per
positive, Adam (the shared trainer) over shuffled positives each epoch, ``reg`` = lambda applied to the
embeddings of the batch.

Unknown user (index -1): scored with the mean of all user embeddings (a popularity-like ranking). The
history is not used for unknown users either -- BPR-MF has no way to fold it in without refitting.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from llmrec.models.base import HistoryBatch, Params
from llmrec.training.base import TorchRecommender
from llmrec.training.data import EpochBatches, pair_keys, uniform_negatives, user_item_pairs


class BPRParams(Params):
    dim: int = Field(64, ge=1, description="latent factors")
    reg: float = Field(0.0, ge=0, description="lambda: L2 on the batch's user / item embeddings")
    init_std: float = Field(0.01, gt=0, description="std of the normal initialisation")


class BPRNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, p: BPRParams):
        super().__init__()
        self.user = nn.Embedding(max(n_users, 1), p.dim)  # W
        self.item = nn.Embedding(n_items, p.dim)  # H
        nn.init.normal_(self.user.weight, std=p.init_std)
        nn.init.normal_(self.item.weight, std=p.init_std)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        w = self.user(users.clamp(min=0))
        unknown = users < 0
        if bool(unknown.any()):
            w = torch.where(unknown[:, None], self.user.weight.mean(0, keepdim=True), w)
        return w


class BPRMF(TorchRecommender):
    name = "bpr"
    Params = BPRParams

    def build(self, split) -> nn.Module:
        self._data = None
        return BPRNet(self.n_users, self.n_items, self.params)

    def train_batches(self, split, generator, batch_size):
        if getattr(self, "_data", None) is None:
            u, i = user_item_pairs(split.train)
            self._data = (u, i, pair_keys(u, i, self.n_items))
        U, I, seen = self._data

        def make(idx):
            u = U[idx]
            return {"u": u, "i": I[idx], "j": uniform_negatives(u.shape, self.n_items, generator, u, seen)}

        return EpochBatches(len(U), batch_size, generator, make)

    def loss(self, batch):
        w, hi, hj = self.net.user(batch["u"]), self.net.item(batch["i"]), self.net.item(batch["j"])
        x_uij = (w * (hi - hj)).sum(-1)  # x̂_ui - x̂_uj
        loss = F.softplus(-x_uij).mean()  # -ln sigma(x̂_uij)
        if self.params.reg:
            loss = loss + self.params.reg * (w.pow(2).sum() + hi.pow(2).sum() + hj.pow(2).sum()) / len(w)
        return loss

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        users = torch.as_tensor(np.asarray(batch.users, dtype=np.int64), device=self.device)
        return self.net.user_vectors(users) @ self.net.item.weight.T
