"""HRNN — hierarchical recurrent network for session-aware recommendation (Quadrana, Karatzoglou, Hidasi,
Cremonesi; RecSys 2017), the hierarchical baseline of HNVM's tables (the HRNN-All version).

- A **session** GRU runs over the items of a session and scores the next item (GRU4Rec).
- A **user** GRU updates the user representation once per session from the session GRU's last state:
  c_m = GRU^usr(c_{m-1}, s_{m,last}); c_0 = 0.
- The session GRU of session m+1 starts from s_{m+1,0} = tanh(W_init c_m + b_init) (HRNN-Init), and in
  HRNN-All (``variant: all``, default) c_m is also appended to its input at every step.

As in HNVM's experiments the loss is BPR (``loss: ce`` for full softmax), with the same scoring head, batching
(groups of whole users, so the user GRU is exact and fully back-propagated), <BOS> input that lets the first
item of a session be predicted, and the same ``max_session_len`` cut. The session GRU of session m needs c_{m-1},
so sessions are processed in rounds: round n runs the n-th session of every user of the batch.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from llmrec.models.base import HistoryBatch, Params
from llmrec.training.hierarchical import (
    SessionBatches,
    bpr_loss,
    chain_tensors,
    context_groups,
    context_tensors,
    gru_chunks,
    uniform_init,
)
from llmrec.training.base import TorchRecommender


class HRNNParams(Params):
    variant: Literal["all", "init"] = Field("all", description="HRNN-All (user state also fed at every step) or HRNN-Init")
    session_hidden: int = Field(100, ge=1, description="session GRU size [I: 100, as in the HRNN paper's setup]")
    user_hidden: int = Field(100, ge=1, description="user GRU size")
    emb_dim: int = Field(100, ge=1, description="item embedding size")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on session and user GRU states")
    loss: Literal["bpr", "ce"] = Field("bpr", description="BPR (as in HNVM's experiments) or full softmax")
    n_neg: int = Field(128, ge=1, description="BPR: uniform negatives per batch, shared by its positions")
    max_session_len: int | None = Field(None, ge=2, description="cut sessions to their last N items (CPU budget); null = whole sessions")
    init_range: float | None = Field(None, gt=0, description="U(-a, a) init; null = PyTorch default")
    needs_protocol: ClassVar[tuple[str, ...]] = ("session",)  # checked when the config loads


class _HRNNNet(nn.Module):
    def __init__(self, n_items: int, p: HRNNParams):
        super().__init__()
        E, Hs, Hu = p.emb_dim, p.session_hidden, p.user_hidden
        self.p = p
        self.n_items, self.bos = n_items, n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, E, padding_idx=0)
        self.ses = nn.GRU(E + (Hu if p.variant == "all" else 0), Hs, batch_first=True)
        self.usr = nn.GRUCell(Hs, Hu)
        self.init = nn.Linear(Hu, Hs)
        self.out = nn.Linear(Hs, E)
        self.out_emb = nn.Embedding(n_items + 1, E, padding_idx=0)
        self.out_bias = nn.Embedding(n_items + 1, 1)
        self.drop = nn.Dropout(p.dropout)
        if p.init_range is not None:
            uniform_init(self, p.init_range)
        nn.init.zeros_(self.out_bias.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def session_pass(self, tokens: torch.Tensor, lengths: torch.Tensor, c: torch.Tensor):
        """Session GRU over <BOS> + items, started from tanh(W_init c) (HRNN-All also feeds c at every step).
        ``tokens`` (S, L+1) with <BOS> first, ``lengths`` counting it. Returns the outputs of the valid steps
        (T, Hs) with their (row, step) indices, and each row's last output."""
        h0 = self.drop(torch.tanh(self.init(c)))

        def inputs(i, L):
            x = self.item_emb(tokens[i, :L])
            if self.p.variant == "all":
                x = torch.cat([x, c[i][:, None, :].expand(-1, L, -1)], dim=2)
            return x

        return gru_chunks(self.ses, lengths, inputs, h0=h0)

    def user_states(self, items: torch.Tensor, lengths: torch.Tensor, ctx_idx: torch.Tensor, n_sess: torch.Tensor,
                    want_outputs: bool):
        """Run the hierarchy over each user's sessions (round n = n-th session of every user). Returns the final
        user states (U, Hu) and, if ``want_outputs``, the decoder outputs with their targets."""
        U = ctx_idx.shape[0]
        Hu = self.p.user_hidden
        c = items.new_zeros((U, Hu), dtype=torch.float) if items is not None else torch.zeros(U, Hu)
        outs, tgts = [], []
        if items is None:
            return c, outs, tgts
        bos = torch.full((items.shape[0], 1), self.bos, dtype=torch.long, device=items.device)
        tok = torch.cat([bos, items], dim=1)  # <BOS> + session, (S, L + 1)
        for n in range(ctx_idx.shape[1]):
            act = torch.nonzero(n_sess > n).flatten()
            if not len(act):
                break
            sidx = ctx_idx[act, n]
            L = lengths[sidx]
            o, r, col, _ = self.session_pass(tok[sidx], L + 1, c[act])
            o = self.drop(o)
            last = col == L[r]  # the state after the session's last item: the session summary
            summary = torch.zeros(len(act), o.shape[1], device=o.device, dtype=o.dtype).index_put((r[last],), o[last])
            if want_outputs:
                pred = ~last
                outs.append(o[pred])
                tgts.append(items[sidx[r[pred]], col[pred]])
            c_new = self.drop(self.usr(summary, c[act]))
            c = c.index_put((act,), c_new)
        return c, outs, tgts

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)


class HRNN(TorchRecommender):
    name = "hrnn"
    requires_sessions = True
    Params = HRNNParams

    def build(self, split) -> nn.Module:
        return _HRNNNet(self.n_items, self.params)

    def train_batches(self, split, generator: torch.Generator, batch_size: int):
        return SessionBatches(split, generator, batch_size, self.params.n_neg if self.params.loss == "bpr" else 0,
                              self.n_items, self.params.max_session_len)

    def loss(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        net = self.net
        _, outs, tgts = net.user_states(b["items"], b["lengths"], b["ctx_idx"], b["n_sess"], want_outputs=True)
        h = net.head(torch.cat(outs))
        tgt = torch.cat(tgts)
        W, bias = net.out_emb.weight, net.out_bias.weight.squeeze(1)
        if self.params.loss == "ce":
            rec = F.cross_entropy(h @ W[1:].t() + bias[1:], tgt - 1, reduction="sum")
        else:
            neg = b["neg"]
            rec = bpr_loss(h, W[tgt], bias[tgt], tgt, W[neg], bias[neg], neg)
        return rec / max(1, tgt.numel())

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        net = self.net
        dev = self.device
        contexts, chains, chain_ctx, rows = context_groups(batch, self.params.max_session_len)
        ctx = {k: v.to(dev) for k, v in context_tensors(contexts).items()}
        if "items" in ctx:
            c, _, _ = net.user_states(ctx["items"], ctx["lengths"], ctx["ctx_idx"], ctx["n_sess"], want_outputs=False)
        else:
            c = torch.zeros(len(contexts), self.params.user_hidden, device=dev)
        x, lens = chain_tensors(chains, net.bos)
        x, lens = x.to(dev), lens.to(dev)
        cc = c[torch.from_numpy(chain_ctx).to(dev)]
        o, r, col, _ = net.session_pass(x, lens, cc)
        states = o.new_zeros(x.shape[0], x.shape[1], o.shape[1]).index_put((r, col), o)
        rows_t = torch.from_numpy(rows).to(dev)
        h = net.head(states[rows_t[0], rows_t[1]])
        W, bias = net.out_emb.weight, net.out_bias.weight.squeeze(1)
        return h @ W[1:].t() + bias[1:]
