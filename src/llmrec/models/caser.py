"""Caser: Personalized Top-N Sequential Recommendation via Convolutional Sequence Embedding
(Tang & Wang, WSDM 2018).

The last L items form an "image" E (L x d); horizontal filters (heights 1..L, max-pooled over time) capture
union-level patterns, vertical filters weighted sums of the L rows; a fully connected layer gives z, which
is concatenated with the user embedding P_u to score every item.

Paper defaults (experiments section / official code): d = 50, L = 5, T = 3, n_v = 4, n_h = 16, dropout 0.5, ReLU for both
activations (phi_c, phi_a), 3 negatives per window, Adam lr 1e-3, l2 1e-6, batch 512.

Training windows (built with tensor ops): for every position t >= 1 of a user's training sequence, the L
items before t (left-padded with 0 when fewer) predict the T items s_t .. s_{t+T-1}; targets past the end of
the sequence are ignored. (The official code slides windows only over positions with a full history of L
items and pads short sequences once; we use every position, as the other sequential models here do.)
Loss (the paper's network training): binary cross-entropy of the T targets against sampled negatives.

An unknown user (index -1) is scored with the mean user embedding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from llmrec.models.base import HistoryBatch, Params
from llmrec.training.base import TorchRecommender
from llmrec.training.data import EpochBatches, pair_keys, seq_lengths, uniform_negatives, user_item_pairs


class CaserParams(Params):
    L: int = Field(5, ge=1, description="window: the last L items")
    T: int = Field(3, ge=1, description="targets: the next T items of a window")
    d: int = Field(50, ge=1, description="embedding size")
    nv: int = Field(4, ge=1, description="vertical filters")
    nh: int = Field(16, ge=1, description="horizontal filters per height 1..L")
    dropout: float = Field(0.5, ge=0, lt=1)
    negatives: int = Field(3, ge=1, description="negatives per window")


class CaserNet(nn.Module):
    def __init__(self, n_items: int, n_users: int, p: CaserParams):
        super().__init__()
        d, L = p.d, p.L
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)  # Q (token 0 = padding)
        self.user_emb = nn.Embedding(max(n_users, 1), d)  # P
        # convolutions written as matrix products (much faster on CPU than Conv2d with these odd shapes):
        self.conv_v = nn.Linear(L, p.nv)  # vertical filters F~ in R^{L x 1}: weighted sums of the L rows
        self.conv_h = nn.ModuleList(nn.Linear(h * d, p.nh) for h in range(1, L + 1))  # horizontal F^k in R^{h x d}
        self.fc = nn.Linear(p.nv * d + p.nh * L, d)  # fully-connected layer: z = phi_a(W [o; o~] + b)
        self.drop = nn.Dropout(p.dropout)
        self.out = nn.Embedding(n_items, 2 * d)  # W' (one row per item) in y = W' [z; P_u] + b'
        self.out_bias = nn.Embedding(n_items, 1)  # b'
        nn.init.normal_(self.item_emb.weight, std=1.0 / d)
        nn.init.normal_(self.user_emb.weight, std=1.0 / d)
        nn.init.normal_(self.out.weight, std=1.0 / (2 * d))
        nn.init.zeros_(self.out_bias.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, x: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens, (B,) users (-1 = unknown) -> (B, 2d) [z; P_u]."""
        E = self.item_emb(x)  # (B, L, d): the "image" of the last L items
        B, L, d = E.shape
        o_v = self.conv_v(E.transpose(1, 2)).transpose(1, 2).flatten(1)  # (B, nv * d)
        o_h = []
        for h, conv in enumerate(self.conv_h, start=1):
            win = E.unfold(1, h, 1).transpose(2, 3).reshape(B, L - h + 1, h * d)  # every h consecutive rows
            o_h.append(F.relu(conv(win)).amax(1))  # phi_c, then max pooling over the L - h + 1 positions
        z = F.relu(self.fc(self.drop(torch.cat([o_v, *o_h], 1))))
        P = self.user_emb(users.clamp(min=0))
        unknown = users < 0
        if bool(unknown.any()):
            P = torch.where(unknown[:, None], self.user_emb.weight.mean(0, keepdim=True), P)
        return torch.cat([z, P], 1)

    def item_scores(self, zp: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, 2d), (B, K) 0-based items -> (B, K): y_i = W'_i [z; P_u] + b'_i (the output layer)."""
        return (self.out(items) * zp[:, None, :]).sum(-1) + self.out_bias(items).squeeze(-1)

    def all_scores(self, zp: torch.Tensor) -> torch.Tensor:
        return zp @ self.out.weight.T + self.out_bias.weight.T


class Caser(TorchRecommender):
    name = "caser"
    Params = CaserParams

    def build(self, split) -> nn.Module:
        self._data = None
        return CaserNet(self.n_items, self.n_users, self.params)

    def _windows(self, split):
        """All (user, L inputs, T targets) windows as tensors, without a Python loop over users."""
        L, T = self.params.L, self.params.T
        seqs = split.train
        lens = seq_lengths(seqs)
        # each user's sequence (+1, token 0 = pad) with L pads before and T pads after, concatenated
        padded_len = lens + L + T
        base = np.cumsum(padded_len) - padded_len
        flat = np.zeros(int(padded_len.sum()), dtype=np.int64)
        pos = np.repeat(base + L, lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))
        flat[pos] = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs if len(s)]) + 1
        n_win = np.maximum(lens - 1, 0)  # one window per target start t = 1..n-1
        users = np.repeat(np.arange(len(seqs)), n_win)
        t = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win) + 1
        start = base[users] + t  # = (base + L) + t - L: the L items before position t
        flat_t = torch.from_numpy(flat)
        x = flat_t[torch.from_numpy(start)[:, None] + torch.arange(L)]
        y = flat_t[torch.from_numpy(start + L)[:, None] + torch.arange(T)]
        u, i = user_item_pairs(seqs)
        self._data = {"x": x, "y": y, "users": torch.from_numpy(users), "seen": pair_keys(u, i, self.n_items)}

    def train_batches(self, split, generator, batch_size):
        if getattr(self, "_data", None) is None:
            self._windows(split)
        D = self._data

        def make(idx):
            users = D["users"][idx]
            neg = uniform_negatives((len(idx), self.params.negatives), self.n_items, generator, users[:, None], D["seen"])
            return {"x": D["x"][idx], "y": D["y"][idx], "users": users, "neg": neg}

        return EpochBatches(len(D["x"]), batch_size, generator, make)

    def loss(self, batch):
        zp = self.net.encode(batch["x"], batch["users"])
        y = batch["y"]
        at = y != 0
        pos = self.net.item_scores(zp, (y - 1).clamp(min=0))[at]
        neg = self.net.item_scores(zp, batch["neg"])
        # -sum_t log sigma(y_t) - sum_j log(1 - sigma(y_j)), as means over targets and negatives
        return F.softplus(-pos).mean() + F.softplus(neg).mean()

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        L = self.params.L
        x = batch.padded(L, shift=1)
        if x.shape[1] < L:
            x = F.pad(x, (L - x.shape[1], 0))
        users = torch.as_tensor(np.asarray(batch.users, dtype=np.int64))
        return self.net.all_scores(self.net.encode(x.to(self.device), users.to(self.device)))
