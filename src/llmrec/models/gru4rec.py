"""GRU4Rec: Session-based Recommendations with Recurrent Neural Networks (Hidasi et al., ICLR 2016), with the
cross-entropy loss of its later versions (Hidasi & Karatzoglou, CIKM 2018).

A GRU reads the items one by one; its output after item t scores the item at t+1.

Paper defaults (§4): one GRU layer of 100 units, dropout 0.5 (on the hidden layer), mini-batch 50,
Adagrad lr 0.01, TOP1 / BPR ranking losses on session-parallel mini-batches with in-batch negatives. The
official implementation's later defaults use a cross-entropy loss and "constrained embedding" (the input
item embedding is also the output weight matrix); we follow those, because full ranking over the catalogue
is what llmrec evaluates and CE over all items is the loss that does best at it.

Training (one row per user per epoch): the training sequence's last ``max_len + 1`` items, left-aligned so
the GRU never runs through padding, inputs s_1..s_{n-1}, targets s_2..s_n at every position at once; CE
logits only where there is a target. Scoring: the GRU output after the history's last item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from llmrec.models.base import HistoryBatch, Params
from llmrec.training.base import TorchRecommender
from llmrec.training.data import EpochBatches, crop_padding, left_aligned


class GRU4RecParams(Params):
    max_len: int = Field(50, ge=1, description="the last max_len items of a sequence are read")
    hidden: int = Field(100, ge=1, description="GRU units (= item embedding size: constrained embedding)")
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.25, ge=0, lt=1, description="dropout on the input embeddings and the GRU output")
    init_std: float = Field(0.02, gt=0)


class GRU4RecNet(nn.Module):
    def __init__(self, n_items: int, p: GRU4RecParams):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, p.hidden, padding_idx=0)  # input and output weights
        self.gru = nn.GRU(p.hidden, p.hidden, num_layers=p.layers, batch_first=True)
        self.drop = nn.Dropout(p.dropout)
        nn.init.normal_(self.item_emb.weight, std=p.init_std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) left-aligned tokens -> (B, L, hidden) GRU outputs (§3: the GRU update h_t = (1 - z_t) h_{t-1} + z_t ĥ_t)."""
        out, _ = self.gru(self.drop(self.item_emb(x)))
        return self.drop(out)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.item_emb.weight[1:].T  # scores of every real item (constrained embedding)


class GRU4Rec(TorchRecommender):
    name = "gru4rec"
    Params = GRU4RecParams

    def build(self, split) -> nn.Module:
        self._data = None
        return GRU4RecNet(self.n_items, self.params)

    def train_batches(self, split, generator, batch_size):
        if getattr(self, "_data", None) is None:
            seq = left_aligned(split.train, self.params.max_len + 1, shift=1)
            seq = seq[(seq != 0).sum(1) >= 2]
            x, y = seq[:, :-1], seq[:, 1:]
            self._data = (x, torch.where(x != 0, y, torch.zeros_like(y)))
        X, Y = self._data

        def make(idx):
            x = crop_padding(X[idx], left=False)
            return {"x": x, "y": Y[idx][:, : x.shape[1]]}

        return EpochBatches(len(X), batch_size, generator, make, lengths=(X != 0).sum(1))

    def loss_weight(self, batch) -> int:
        """The number of terms ``loss`` averages (positions with a target): weights ranks in data-parallel training."""
        return int((batch["y"] != 0).sum())

    def loss(self, batch):
        h = self.net(batch["x"])
        at = batch["y"] != 0
        return F.cross_entropy(self.net.logits(h[at]), batch["y"][at] - 1)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        x = batch.padded(self.params.max_len, shift=1, left=False).to(self.device)
        last = (batch.lengths(self.params.max_len) - 1).clamp(min=0).to(self.device)
        h = self.net(x)[torch.arange(len(x), device=self.device), last]
        return self.net.logits(h)
