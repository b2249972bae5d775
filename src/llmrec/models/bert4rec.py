"""BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from Transformer
(Sun et al., CIKM 2019).

A bidirectional Transformer trained with the Cloze objective: random items of the sequence are replaced by a
[mask] token and predicted from both sides. To recommend, [mask] is appended after the history and the
output at that position is read.

Paper defaults (§4.3-4.4): hidden d = 64, L = 2 layers, h = 2 heads, max length N = 200 (ML-1M, ML-20M) /
50 (Beauty, Steam), dropout 0.1, mask proportion rho = 0.6 (Beauty), 0.4 (Steam), 0.2 (ML-1M, ML-20M), GELU,
inner FFN size 4d, Adam lr 1e-4 with linear decay, batch 256 (our configs use lr 1e-3 without decay, which
converges in far fewer epochs on these data).

Training: each user's training sequence (right-aligned, last ``max_len`` items) is one row per epoch; a fresh
random mask is drawn every epoch (the paper's "dupe factor" of pre-generated masks, dynamically); a row
that draws no mask gets its last item masked (which also gives the paper's last-item-masked samples).
Loss: softmax cross-entropy over all items at the masked positions only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from llmrec.models.base import HistoryBatch, Params
from llmrec.layers import Dropout, attention
from llmrec.training.base import TorchRecommender
from llmrec.training.data import EpochBatches, crop_padding, right_aligned


class BERT4RecParams(Params):
    max_len: int = Field(50, ge=2, description="N: 200 for ML-1M, 50 for Beauty")
    hidden: int = Field(64, ge=1)
    blocks: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    mask_prob: float = Field(0.6, gt=0, le=1, description="rho: 0.6 Beauty, 0.2 ML-1M")
    init_std: float = Field(0.02, gt=0)

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


class Layer(nn.Module):
    """§3.3: Trm(H) = LN(A + Dropout(PFFN(A))), A = LN(H + Dropout(MH(H))); MH is multi-head scaled
    dot-product attention over the whole sequence (no causal mask); PFFN(x) = GELU(x W1 + b1) W2 + b2."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        assert d % heads == 0, "hidden must be divisible by heads"
        self.heads, self.dropout = heads, dropout
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, d = h.shape
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, mask, self.dropout, self.training)
        a = self.ln1(h + self.drop(self.out(y.transpose(1, 2).reshape(B, L, d))))
        return self.ln2(a + self.drop(self.ffn(a)))


class BERT4RecNet(nn.Module):
    def __init__(self, n_items: int, p: BERT4RecParams):
        super().__init__()
        d = p.hidden
        self.mask_token = n_items + 1  # tokens: 0 padding, 1..n items, n+1 [mask]
        self.item_emb = nn.Embedding(n_items + 2, d, padding_idx=0)  # E, shared with the output layer
        self.pos_emb = nn.Embedding(p.max_len, d)  # learned positional embedding P
        self.ln, self.drop = nn.LayerNorm(d), Dropout(p.dropout)
        self.layers = nn.ModuleList(Layer(d, p.heads, p.dropout) for _ in range(p.blocks))
        self.proj = nn.Linear(d, d)  # W^P, b^P
        self.out_bias = nn.Parameter(torch.zeros(n_items))  # b^O
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(mod.weight, std=p.init_std, a=-2 * p.init_std, b=2 * p.init_std)
                if isinstance(mod, nn.Linear):
                    nn.init.zeros_(mod.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L = x.shape
        pos = torch.arange(L - 1, -1, -1, device=x.device)  # counted from the end (right-aligned input)
        h = self.drop(self.ln(self.item_emb(x) + self.pos_emb(pos)))  # §3.4: h^0_i = v_i + p_i
        valid = x != 0
        mask = valid[:, None, None, :] | torch.eye(L, dtype=torch.bool, device=x.device)  # keys: not padding
        for layer in self.layers:
            h = layer(h, mask)
        return h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """§3.5: P(v) = softmax(GELU(h W^P + b^P) E^T + b^O), over the real items."""
        return F.gelu(self.proj(h)) @ self.item_emb.weight[1 : self.mask_token].T + self.out_bias


class BERT4Rec(TorchRecommender):
    name = "bert4rec"
    Params = BERT4RecParams

    def build(self, split) -> nn.Module:
        self._seq = None
        return BERT4RecNet(self.n_items, self.params)

    def train_batches(self, split, generator, batch_size):
        if getattr(self, "_seq", None) is None:
            seq = right_aligned(split.train, self.params.max_len, shift=1)
            self._seq = seq[(seq != 0).any(1)]
        seq, mask_token, rho = self._seq, self.n_items + 1, self.params.mask_prob

        def make(idx):
            x = crop_padding(seq[idx])
            real = x != 0
            masked = (torch.rand(x.shape, generator=generator) < rho) & real  # the Cloze task (§3.6)
            none = ~masked.any(1)
            masked[none, -1] = True  # rows without a mask predict their last item
            return {"x": torch.where(masked, torch.full_like(x, mask_token), x), "y": torch.where(masked, x, torch.zeros_like(x))}

        return EpochBatches(len(seq), batch_size, generator, make, lengths=(seq != 0).sum(1))

    def loss_weight(self, batch) -> int:
        """The number of terms ``loss`` averages (positions with a target): weights ranks in data-parallel training."""
        return int((batch["y"] != 0).sum())

    def loss(self, batch):
        h = self.net(batch["x"])
        at = batch["y"] != 0
        # §3.6: L = 1/|S^m| sum_{v_m in S^m} -log P(v_m = v*_m | S'), at masked positions only
        return F.cross_entropy(self.net.logits(h[at]), batch["y"][at] - 1)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        x = batch.padded(self.params.max_len - 1, shift=1)
        x = torch.cat([x, torch.full((len(x), 1), self.n_items + 1, dtype=x.dtype)], dim=1).to(self.device)
        return self.net.logits(self.net(x)[:, -1])

