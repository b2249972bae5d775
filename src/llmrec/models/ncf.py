"""NCF / NeuMF: Neural Collaborative Filtering (He et al., WWW 2017).

A general (non-sequential) model fusing GMF (an element-wise product of user and item embeddings) and an
MLP over their concatenation:

    phi_GMF = p_u^G ⊙ q_i^G                                        (§3.2, GMF)
    phi_MLP = a_L(W_L^T (... a_2(W_2^T [p_u^M; q_i^M] + b_2) ...) + b_L)   (§3.3, MLP, ReLU)
    ŷ_ui    = sigma(h^T [phi_GMF; phi_MLP])                         (§3.4, NeuMF)

trained with the log loss on observed interactions and sampled negatives (§3.1.1:
L = -sum y log ŷ + (1 - y) log(1 - ŷ)).

Paper defaults (§4.1): predictive factors 8 (the last hidden layer; tested 8-64), a tower MLP halving each
layer (factors 8 -> layers 32 -> 16 -> 8 with 16-dim MLP embeddings), 4 negatives per positive, Adam lr 0.001,
batch 256, no pre-training here (the paper's optional GMF/MLP pre-training, alpha = 0.5, is not applied).

Scoring ranks by the logit (sigma is monotone). Unknown user (index -1): the mean user embeddings.
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


class NCFParams(Params):
    factors: int = Field(8, ge=1, description="predictive factors: GMF size and the MLP's last layer")
    layers: int = Field(3, ge=1, description="MLP tower layers: input 4*factors ... factors when 3")
    negatives: int = Field(4, ge=1, description="sampled negatives per observed interaction")
    dropout: float = Field(0.0, ge=0, lt=1)


class NeuMFNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, p: NCFParams):
        super().__init__()
        f = p.factors
        sizes = [f * 2 ** (p.layers - 1 - k) for k in range(p.layers)]  # e.g. [32, 16, 8]: sizes[0] = [p; q]
        n_users = max(n_users, 1)
        self.user_g, self.item_g = nn.Embedding(n_users, f), nn.Embedding(n_items, f)
        self.user_m, self.item_m = nn.Embedding(n_users, sizes[0] // 2), nn.Embedding(n_items, sizes[0] - sizes[0] // 2)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.drop = nn.Dropout(p.dropout)
        self.h = nn.Linear(f + sizes[-1], 1)
        for e in (self.user_g, self.item_g, self.user_m, self.item_m):
            nn.init.normal_(e.weight, std=0.01)

    def _users(self, emb: nn.Embedding, users: torch.Tensor) -> torch.Tensor:
        v = emb(users.clamp(min=0))
        unknown = users < 0
        if bool(unknown.any()):
            v = torch.where(unknown[:, None], emb.weight.mean(0, keepdim=True), v)
        return v

    def _tower(self, z: torch.Tensor) -> torch.Tensor:
        for lin in self.mlp:
            z = self.drop(F.relu(lin(z)))
        return z

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for (B,) users and (B, K) items -> (B, K)."""
        K = items.shape[1]
        g = self._users(self.user_g, users)[:, None, :] * self.item_g(items)  # phi_GMF
        pm = self._users(self.user_m, users)[:, None, :].expand(-1, K, -1)
        m = self._tower(torch.cat([pm, self.item_m(items)], -1))  # phi_MLP; with one layer: the concatenation
        return self.h(torch.cat([g, m], -1)).squeeze(-1)

    def all_items(self, users: torch.Tensor, chunk_elems: int = 1 << 23) -> torch.Tensor:
        """(B,) users -> (B, n_items) logits. The MLP's first layer is split, W [p; q] = W_p p + W_q q, so the
        item half is computed once per call; users go in chunks to bound the (chunk, n_items, width) memory."""
        n = self.item_g.num_embeddings
        q_m = self.item_m.weight
        hg = self.h.weight[0, : self.item_g.embedding_dim]
        hm, hb = self.h.weight[0, self.item_g.embedding_dim :], self.h.bias
        if not self.mlp:  # one "layer": phi_MLP is the concatenation itself
            pm = self._users(self.user_m, users)
            du = pm.shape[1]
            mlp = (pm @ hm[:du])[:, None] + (q_m @ hm[du:])[None, :]
            gmf = (self._users(self.user_g, users) * hg) @ self.item_g.weight.T
            return gmf + mlp + hb
        first, rest = self.mlp[0], self.mlp[1:]
        du = self.user_m.embedding_dim
        item_part = q_m @ first.weight[:, du:].T  # (n, h1)
        width = first.out_features
        step = max(1, chunk_elems // (n * width))
        out = []
        for u in users.split(step):
            user_part = self._users(self.user_m, u) @ first.weight[:, :du].T + first.bias  # (b, h1)
            z = F.relu(user_part[:, None, :] + item_part[None, :, :])
            for lin in rest:
                z = F.relu(lin(z))
            gmf = (self._users(self.user_g, u) * hg) @ self.item_g.weight.T  # h_G^T (p_u ⊙ q_i) for every i
            out.append(gmf + z @ hm + hb)
        return torch.cat(out) if out else torch.zeros(0, n, device=users.device)


class NeuMF(TorchRecommender):
    name = "ncf"
    Params = NCFParams

    def build(self, split) -> nn.Module:
        self._data = None
        return NeuMFNet(self.n_users, self.n_items, self.params)

    def train_batches(self, split, generator, batch_size):
        if getattr(self, "_data", None) is None:
            u, i = user_item_pairs(split.train)
            self._data = (u, i, pair_keys(u, i, self.n_items))
        U, I, seen = self._data
        k = self.params.negatives

        def make(idx):  # one positive and k negatives per observed interaction
            u = U[idx]
            neg = uniform_negatives((len(u), k), self.n_items, generator, u[:, None], seen)
            items = torch.cat([I[idx][:, None], neg], 1)
            labels = torch.zeros(items.shape)
            labels[:, 0] = 1.0
            return {"u": u, "items": items, "labels": labels}

        return EpochBatches(len(U), batch_size, generator, make)

    def loss(self, batch):
        return F.binary_cross_entropy_with_logits(self.net(batch["u"], batch["items"]), batch["labels"])

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        users = torch.as_tensor(np.asarray(batch.users, dtype=np.int64), device=self.device)
        return self.net.all_items(users)
