"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018).

A causal Transformer over the user's last ``max_len`` items; the output at position t, dotted with the
(shared) item embeddings, scores the item at t+1.

Paper defaults (§IV-B): d = 50, b = 2 blocks, h = 1 head, n = 200 (ML-1M) / 50 (Beauty, Games, Steam),
dropout 0.2 (ML-1M) / 0.5 (the sparse Amazon data), Adam lr 0.001 with betas (0.9, 0.98), batch 128, learned
positional embeddings, one sampled negative per position (``loss: bce``, §III-E).

``loss: ce`` replaces the paper's objective by full-softmax cross-entropy over all items at every position,
the variant with which SASRec beats BERT4Rec in the replicability literature (e.g. Klenitskiy & Vasilev,
RecSys 2023). RecBole's published SASRec on Beauty (HR@10 0.083, NDCG@10 0.0416) is trained with this loss
too; configs/beauty/sasrec.yaml lists the settings we use.

Training (one row per user per epoch; with ``train_windows: all`` one row per window of ``max_len + 1`` items, so
that long sequences use every target): the user's training sequence, right-aligned and truncated to its last
``max_len + 1`` items, gives inputs s_1..s_{n-1} and targets s_2..s_n at every position at once; CE logits are
computed only at positions that have a target. Scoring: the history's last ``max_len`` items, output at the
last position. Positional embeddings count from the end (the last item is position 0), which is the paper's
absolute position in its right-aligned window and lets us crop all-padding columns off a batch.

RecBole's SASRec, for side-by-side runs (benchmarks/recbole_side_by_side.py): ``block: bert`` (post-LayerNorm
blocks), ``emb_scale: false``, ``positions: from_start`` (left-aligned; the output at every position is then
exactly the output for that prefix alone, so a loss at every position trains RecBole's one-row-per-prefix
objective) and ``train_windows: all`` with ``window_stride`` (1 = RecBole's rows, each target with its full
``max_len`` context; larger strides share one forward pass among ``stride`` targets).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from llmrec.models.base import HistoryBatch, Params
from llmrec.layers import Dropout, attention
from llmrec.training.base import TorchRecommender
from llmrec.training.data import (
    EpochBatches, crop_padding, left_aligned, pair_keys, right_aligned, seq_lengths, uniform_negatives, user_item_pairs,
    windows,
)


class SASRecParams(Params):
    max_len: int = Field(50, ge=1, description="n: the last n items of a sequence are used")
    hidden: int = Field(50, ge=1, description="d: embedding and hidden size")
    blocks: int = Field(2, ge=1, description="b: self-attention blocks")
    heads: int = Field(1, ge=1, description="attention heads (hidden must be divisible by heads)")
    dropout: float = Field(0.5, ge=0, lt=1, description="0.5 for sparse data (Beauty), 0.2 for ML-1M")
    loss: Literal["bce", "ce"] = Field("bce", description="bce: paper (1 sampled negative per position); ce: full softmax")
    init_std: float = Field(0.02, gt=0, description="std of the normal init of embeddings and linear layers")
    block: Literal["sasrec", "bert"] = Field(
        "sasrec", description="sasrec: the paper's code, x + Dropout(g(LayerNorm(x))), dropout inside the FFN, a final "
                              "LayerNorm; bert: BERT's order, LayerNorm(x + Dropout(g(x))) after a LayerNorm of the input "
                              "embeddings, no dropout inside the FFN (RecBole's SASRec)")
    positions: Literal["from_end", "from_start"] = Field(
        "from_end", description="from_end: right-aligned, the last item is position 0 (the paper's window); from_start: "
                                "left-aligned, the first item is position 0, so the output at every position is "
                                "exactly the output for that prefix (as RecBole trains, one row per prefix)")
    emb_scale: bool = Field(True, description="multiply item embeddings by sqrt(d) before adding positions (the paper's code)")
    train_windows: Literal["last", "all"] = Field(
        "last", description="last: one row per user, its last max_len + 1 items (the paper); all: every sequence "
                            "cut into windows of max_len + 1 items so that every training target is used once per epoch")
    window_stride: int | None = Field(
        None, ge=1, description="with train_windows: all, the distance between window ends (default max_len: windows "
                                "overlap by one item); smaller gives every target at least max_len + 1 - stride items "
                                "of context, at max_len / stride times the compute (1: RecBole's one row per prefix)")

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.window_stride is not None and (self.train_windows != "all" or self.window_stride > self.max_len):
            raise ValueError(f"window_stride needs train_windows: all and at most max_len ({self.max_len})")
        return self


class CausalSelfAttention(nn.Module):
    """§III-B: Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V with Q, K, V = Ê W^Q, Ê W^K, Ê W^V, where
    query i may only attend to keys j <= i ("causality") that are not padding."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        assert d % heads == 0, "hidden must be divisible by heads"
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, mask, self.dropout, self.training)
        return self.out(y.transpose(1, 2).reshape(B, L, d))


class Block(nn.Module):
    """One self-attention block: S = SA(F), then the point-wise FFN(x) = ReLU(x W1 + b1) W2 + b2 (§III-B; inner
    size d, as in the paper); each sub-layer g is applied as x + Dropout(g(LayerNorm(x))) (§III-C: residual
    connections, layer normalization, dropout)."""

    def __init__(self, d: int, heads: int, dropout: float, post_norm: bool = False):
        super().__init__()
        self.post_norm = post_norm
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, dropout)
        inner = nn.Identity() if post_norm else Dropout(dropout)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), inner, nn.Linear(d, d))
        self.drop = Dropout(dropout)

    def forward(self, x, mask):
        if self.post_norm:  # LayerNorm(x + Dropout(g(x))), BERT's order
            x = self.ln1(x + self.drop(self.attn(x, mask)))
            return self.ln2(x + self.drop(self.ffn(x)))
        x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, p: SASRecParams):
        super().__init__()
        d = p.hidden
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)  # M (token 0 = padding); shared with N (§III-D)
        self.pos_emb = nn.Embedding(p.max_len, d)  # P, learned (§III-A)
        self.drop = Dropout(p.dropout)
        post = p.block == "bert"
        self.blocks = nn.ModuleList(Block(d, p.heads, p.dropout, post) for _ in range(p.blocks))
        self.ln = nn.LayerNorm(d)  # pre: the final LayerNorm; post: the LayerNorm of the input embeddings
        self.post = post
        self.scale = d**0.5 if p.emb_scale else 1.0
        self.from_start = p.positions == "from_start"
        self.apply(lambda mod: _init(mod, p.init_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens, right-aligned (left-aligned with positions: from_start) -> (B, L, d) outputs F^(b)."""
        B, L = x.shape
        if self.from_start:
            pos = torch.arange(L, device=x.device)
        else:
            pos = torch.arange(L - 1, -1, -1, device=x.device)  # distance from the end: last item = 0
        h = self.item_emb(x) * self.scale + self.pos_emb(pos)  # §III-A: Ê = [M_s_i + P_i]
        h = self.drop(self.ln(h) if self.post else h)
        valid = x != 0
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        # (B, 1, L, L): causal and key not padding; a padding query attends to itself so no row is empty
        mask = (causal & valid[:, None, None, :]) | torch.eye(L, dtype=torch.bool, device=x.device)
        for blk in self.blocks:
            h = blk(h, mask)
        return h if self.post else self.ln(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """§III-D: r_{i,t} = F_t N_i^T with N = M (shared item embedding), for every real item i."""
        return h @ self.item_emb.weight[1:].T


def _init(mod: nn.Module, std: float) -> None:
    if isinstance(mod, (nn.Linear, nn.Embedding)):
        nn.init.normal_(mod.weight, std=std)
        if isinstance(mod, nn.Linear) and mod.bias is not None:
            nn.init.zeros_(mod.bias)
        if isinstance(mod, nn.Embedding) and mod.padding_idx is not None:
            with torch.no_grad():
                mod.weight[mod.padding_idx].zero_()


class SASRec(TorchRecommender):
    name = "sasrec"
    Params = SASRecParams

    def build(self, split) -> nn.Module:
        self._data = None
        return SASRecNet(self.n_items, self.params)

    def _prepare(self, split):
        """Per user: inputs s_1..s_{n-1} and next-item targets s_2..s_n (tokens; 0 = no target)."""
        n = self.params.max_len + 1
        align = left_aligned if self.params.positions == "from_start" else right_aligned
        keep = None
        if self.params.train_windows == "all":  # long sequences give several rows: every target once per epoch
            rows, owner, keep = windows(split.train, n, self.params.window_stride)
            seq, users = align(rows, n, shift=1), torch.from_numpy(owner)
        else:
            seq = align(split.train, n, shift=1)
            seq = seq[(seq != 0).sum(1) >= 2]  # a user needs two items to give one target
            users = torch.nonzero(torch.from_numpy(seq_lengths(split.train) >= 2)).squeeze(1)
        x, y = seq[:, :-1], seq[:, 1:]
        y = torch.where(x != 0, y, torch.zeros_like(y))
        if keep is not None:  # a window's targets before its last `keep` belong to a later window
            end = n if self.params.positions == "from_end" else (seq != 0).sum(1, keepdim=True)  # after the window
            first = end - 1 - torch.from_numpy(keep)[:, None]  # the y column of its first kept target
            y = torch.where(torch.arange(n - 1) >= first, y, torch.zeros_like(y))
        u, i = user_item_pairs(split.train)
        self._data = {"x": x, "y": y, "users": users, "seen": pair_keys(u, i, self.n_items)}

    def train_batches(self, split, generator, batch_size):
        if getattr(self, "_data", None) is None:
            self._prepare(split)
        D = self._data

        def make(idx):
            if self.params.positions == "from_start":
                x = crop_padding(D["x"][idx], left=False)
                y = D["y"][idx][:, : x.shape[1]]
            else:
                x = crop_padding(D["x"][idx])
                y = D["y"][idx][:, -x.shape[1] :]
            b = {"x": x, "y": y}
            if self.params.loss == "bce":  # one negative per position, not in the user's training items
                neg = uniform_negatives(y.shape, self.n_items, generator, D["users"][idx][:, None], D["seen"]) + 1
                b["neg"] = torch.where(y != 0, neg, torch.zeros_like(neg))
            return b

        return EpochBatches(len(D["x"]), batch_size, generator, make, lengths=(D["x"] != 0).sum(1))

    def loss_weight(self, batch) -> int:
        """The number of terms ``loss`` averages (positions with a target): weights ranks in data-parallel training."""
        return int((batch["y"] != 0).sum())

    def loss(self, batch):
        h = self.net(batch["x"])
        y = batch["y"]
        at = y != 0
        if self.params.loss == "ce":  # softmax over all items, only where there is a target
            return F.cross_entropy(self.net.logits(h[at]), y[at] - 1)
        # §III-E: -sum_t [log sigma(r_{o_t,t}) + log(1 - sigma(r_{j,t}))], j a sampled negative
        e = self.net.item_emb
        ht = h[at]
        pos = (ht * e(y[at])).sum(-1)
        neg = (ht * e(batch["neg"][at])).sum(-1)
        return (F.softplus(-pos).sum() + F.softplus(neg).sum()) / at.sum()  # -log sigma(x) = softplus(-x)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        if self.params.positions == "from_start":  # left-aligned: the output at each row's last item
            x = batch.padded(self.params.max_len, shift=1, left=False).to(self.device)
            last = (x != 0).sum(1).clamp(min=1) - 1
            return self.net.logits(self.net(x)[torch.arange(len(x), device=x.device), last])
        x = batch.padded(self.params.max_len, shift=1).to(self.device)
        return self.net.logits(self.net(x)[:, -1])

