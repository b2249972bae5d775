"""HNVM — Hierarchical Neural Variational Model (Xiao, Liang, Meng; WWW 2019).

A user's sessions s_1..s_N are generated hierarchically (§3.2):

- an **encoder** GRU summarises each session, h_n^enc = last state (Eq. 9);
- a **context** GRU runs over the session summaries, h_n^con = GRU^con(h_{n-1}^con, h_n^enc) (Eq. 10);
- the **general preference** e^u ~ N(mu_e, diag sigma_e^2), a function of the user id (Eq. 6, 14);
- the **long-term preference** z_n ~ N(.), prior from a 2-layer MLP on [h_{n-1}^con; e^u] (Eq. 5, 12), posterior
  from a 2-layer MLP on [h_{n-1}^con; h_n^enc] (Eq. 15-16);
- a **decoder** GRU with input [item; h_{n-1}^con; z_n] and h_{n,0}^dec = 0 scores the next item (Eq. 11, 2).

Training maximises the ELBO (Eq. 18-22): reconstruction (BPR on the decoder scores, as the paper's §4.3 says;
``loss: ce`` for full softmax) minus beta * (KL_z summed over sessions + KL_e once per user), with
reparameterised samples (Eq. 23-24) and beta annealed linearly from 0 to 1 over ``kl_anneal_steps`` updates
(Bowman et al.). The loss is divided by the number of predicted items in the batch. Inference uses the means:
e = posterior mean, z = prior mean from [h_{n-1}^con; e] (the posterior needs the session being predicted).

Implementation choices the paper leaves open (docs/sessions.md, spec B.11): a learned <BOS> input lets the
decoder predict a session's first item (so next-session and first positions can be scored); decoder output
= Linear(h) . output item embedding + item bias; D_z = D_e = 64, MLP hidden 200 with tanh; variances are
``var_scale`` (0.05, §4.3) * exp(log-variance output) for prior and posterior; uniform init with variance 0.01
(U(-0.1732, 0.1732)), biases 0; dropout 0.1 on GRU states. The paper's AdaGrad-with-momentum is replaced by
the shared trainer's AdamW. Ablations: ``use_e: false`` (no general preference; the z prior sees only
h^con) and ``use_z: false`` (no long-term latent; e^u is fed to the decoder directly, so the model keeps its
general preference).

Batches (Eq. 19's session-level bound, computed exactly): a batch is a group of whole users with at most
``batch_size`` training sessions in total, so each session is encoded once per epoch and h^con is exact.

Scoring needs the history's session boundaries (``HistoryBatch.sessions``, set by the session protocol):
the last entry is the current session's prefix. Without them the history is treated as one current
session with no earlier sessions.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from llmrec.models.base import HistoryBatch, Params
from llmrec.training.base import TorchRecommender
from llmrec.training.hierarchical import (
    SessionBatches,
    bpr_loss,
    chain_tensors,
    context_groups,
    context_states,
    context_tensors,
    gru_chunks,
    shift_in,
    uniform_init,
)

# ----------------------------------------------------------------------------------------------------
# pure functions


def kl_diag_gaussians(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p)), summed over the last dim (the negated
    brackets of Eq. 22)."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0).sum(-1)


def kl_weight(step: int, anneal_steps: int) -> float:
    """KL annealing (§4.3, after Bowman et al.): 0 at step 0, linear to 1 at ``anneal_steps``, then 1."""
    if anneal_steps <= 0:
        return 1.0
    return min(1.0, max(0, step) / anneal_steps)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, sample: bool) -> torch.Tensor:
    """Eq. 23-24: mu + sigma * eps in training, the mean otherwise."""
    if not sample:
        return mu
    return mu + (0.5 * logvar).exp() * torch.randn_like(mu)


class HNVMParams(Params):
    hidden: int = Field(200, ge=1, description="GRU hidden size, encoder / context / decoder (§4.3)")
    emb_dim: int = Field(200, ge=1, description="item embedding size [I]")
    z_dim: int = Field(64, ge=1, description="D_z, long-term latent size [I]")
    e_dim: int = Field(64, ge=1, description="D_e, general-preference latent size [I]")
    mlp_hidden: int = Field(200, ge=1, description="hidden size of the two-layer prior/posterior MLPs (tanh) [I]")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on GRU states (§4.3)")
    var_scale: float = Field(0.05, gt=0, description="prior/posterior variances are var_scale * exp(output) (§4.3)")
    loss: Literal["bpr", "ce"] = Field("bpr", description="reconstruction term: BPR (§4.3) or full softmax")
    n_neg: int = Field(128, ge=1, description="BPR: uniform negatives per batch, shared by its positions")
    kl_anneal_steps: int = Field(2000, ge=0, description="beta goes linearly 0 -> 1 over this many updates; 0 = no annealing")
    use_e: bool = Field(True, description="ablation switch: general preference e^u")
    use_z: bool = Field(True, description="ablation switch: long-term latent z_n")
    e_prior: Literal["learned", "standard_normal"] = Field("learned", description="p(e|a): per-user learned Gaussian (Eq. 6) or N(0, I)")
    tie_embeddings: bool = Field(False, description="share input and output item embeddings")
    max_session_len: int | None = Field(None, ge=2, description="cut sessions to their last N items (CPU budget); null = whole sessions")
    init_range: float | None = Field(0.1732, gt=0, description="U(-a, a) init (variance 0.01, §4.3); null = PyTorch default")
    needs_protocol: ClassVar[tuple[str, ...]] = ("session",)  # checked when the config loads


class _HNVMNet(nn.Module):
    def __init__(self, n_items: int, n_users: int, p: HNVMParams):
        super().__init__()
        E, H, Dz, De = p.emb_dim, p.hidden, p.z_dim, p.e_dim
        self.p = p
        self.n_items, self.bos = n_items, n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, E, padding_idx=0)  # 0 pad, 1..n items, n+1 <BOS>
        self.enc = nn.GRU(E, H, batch_first=True)  # Eq. 9
        self.ctx = nn.GRU(H, H, batch_first=True)  # Eq. 10
        cond = H + (Dz if p.use_z else 0) + (De if (p.use_e and not p.use_z) else 0)
        self.dec = nn.GRU(E + cond, H, batch_first=True)  # Eq. 11
        if p.use_e:  # Eq. 14 posterior (and Eq. 6 prior) as per-user tables: a^u is the one-hot user id
            self.q_e_mu = nn.Embedding(max(1, n_users), De)
            self.q_e_logvar = nn.Embedding(max(1, n_users), De)
            if p.e_prior == "learned":
                self.p_e_mu = nn.Embedding(max(1, n_users), De)
                self.p_e_logvar = nn.Embedding(max(1, n_users), De)
        if p.use_z:
            prior_in = H + (De if p.use_e else 0)
            self.prior = nn.Sequential(nn.Linear(prior_in, p.mlp_hidden), nn.Tanh(), nn.Linear(p.mlp_hidden, 2 * Dz))  # Eq. 12
            self.post = nn.Sequential(nn.Linear(2 * H, p.mlp_hidden), nn.Tanh(), nn.Linear(p.mlp_hidden, 2 * Dz))  # Eq. 15-16
        self.out = nn.Linear(H, E)  # g(.) of Eq. 2: (W h) . item embedding + item bias
        if not p.tie_embeddings:
            self.out_emb = nn.Embedding(n_items + 1, E, padding_idx=0)
        self.out_bias = nn.Embedding(n_items + 1, 1)
        self.drop = nn.Dropout(p.dropout)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # updates done (KL annealing, saved)
        if p.init_range is not None:
            uniform_init(self, p.init_range)
        for name in ("q_e_logvar", "p_e_logvar"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
        nn.init.zeros_(self.out_bias.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    # -- pieces ----------------------------------------------------------------------------------
    def out_weight(self) -> torch.Tensor:
        return self.item_emb.weight[: self.n_items + 1] if self.p.tie_embeddings else self.out_emb.weight

    def log_scale(self) -> float:
        return math.log(self.p.var_scale)

    def encode(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Eq. 9: last encoder state of each session, (S, H)."""
        _, _, _, h = gru_chunks(self.enc, lengths, lambda i, L: self.item_emb(items[i, :L]))
        return self.drop(h)

    def user_e(self, users: torch.Tensor, sample: bool):
        """e^u (sampled or the posterior mean), and KL(q(e|a) || p(e|a)) per user. Unknown users get 0."""
        De = self.p.e_dim
        known = (users >= 0) & (users < self.q_e_mu.num_embeddings)
        u = users.clamp(min=0, max=self.q_e_mu.num_embeddings - 1)
        mu_q = self.q_e_mu(u) * known[:, None]
        lv_q = self.q_e_logvar(u) * known[:, None] + self.log_scale()
        e = reparameterise(mu_q, lv_q, sample)
        if self.p.e_prior == "learned":
            mu_p, lv_p = self.p_e_mu(u) * known[:, None], self.p_e_logvar(u) * known[:, None] + self.log_scale()
        else:
            mu_p, lv_p = torch.zeros_like(mu_q), torch.zeros_like(lv_q)
        kl = kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p) * known
        return e, kl, De

    def z_prior(self, h_con_prev: torch.Tensor, e: torch.Tensor | None):
        x = h_con_prev if e is None else torch.cat([h_con_prev, e], dim=1)
        mu, lv = self.prior(x).chunk(2, dim=1)
        return mu, lv + self.log_scale()

    def z_post(self, h_con_prev: torch.Tensor, h_enc: torch.Tensor):
        mu, lv = self.post(torch.cat([h_con_prev, h_enc], dim=1)).chunk(2, dim=1)
        return mu, lv + self.log_scale()

    def dec_input(self, tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Eq. 11 input: [item embedding; h_{n-1}^con; z_n] at every step."""
        x = self.item_emb(tokens)
        return torch.cat([x, cond[:, None, :].expand(-1, x.shape[1], -1)], dim=2)

    def conditioning(self, h_con_prev, e_s, z):
        parts = [h_con_prev]
        if self.p.use_z:
            parts.append(z)
        elif self.p.use_e:
            parts.append(e_s)
        return torch.cat(parts, dim=1)

    # -- training --------------------------------------------------------------------------------
    def elbo_terms(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Negative ELBO pieces for a batch of whole users (sums over the batch)."""
        p = self.p
        h_enc = self.encode(b["items"], b["lengths"])  # (S, H)
        con = context_states(self.ctx, h_enc, b["ctx_idx"], b["n_sess"], self.drop)  # (U, N+1, H)
        h_con_prev = con[b["sess_user"], b["sess_pos"]]  # h_{n-1}^con for every session
        kl_e = h_enc.new_zeros(())
        kl_z = h_enc.new_zeros(())
        e_s = z = None
        if p.use_e:
            e, kl_eu, _ = self.user_e(b["users"], sample=self.training)
            kl_e = kl_eu.sum()  # once per user (Eq. 19's F term)
            e_s = e[b["sess_user"]]
        if p.use_z:
            mu_p, lv_p = self.z_prior(h_con_prev, e_s)  # Eq. 5, 12
            mu_q, lv_q = self.z_post(h_con_prev, h_enc)  # Eq. 15-16
            z = reparameterise(mu_q, lv_q, self.training)  # Eq. 24
            kl_z = kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p).sum()  # Eq. 22, summed over n
        cond = self.conditioning(h_con_prev, e_s, z)
        inp = shift_in(b["items"], b["lengths"], self.bos)
        out, r, c, _ = gru_chunks(self.dec, b["lengths"], lambda i, L: self.dec_input(inp[i, :L], cond[i]))  # Eq. 11
        h = self.out(self.drop(out))  # (T, E)
        tgt = b["items"][r, c]  # (T,) tokens
        W, bias = self.out_weight(), self.out_bias.weight.squeeze(1)
        if p.loss == "ce":
            logits = h @ W[1:].t() + bias[1:]
            rec = F.cross_entropy(logits, tgt - 1, reduction="sum")
        else:
            neg = b["neg"]
            rec = bpr_loss(h, W[tgt], bias[tgt], tgt, W[neg], bias[neg], neg)
        return {"rec": rec, "kl_z": kl_z, "kl_e": kl_e, "n_tokens": torch.tensor(float(tgt.numel()))}

    # -- scoring ---------------------------------------------------------------------------------
    def score_contexts(self, ctx: dict[str, torch.Tensor], chains: torch.Tensor, chain_lens: torch.Tensor,
                       chain_ctx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        U = ctx["users"].shape[0]
        H = self.p.hidden
        if "items" in ctx:
            h_enc = self.encode(ctx["items"], ctx["lengths"])
            con = context_states(self.ctx, h_enc, ctx["ctx_idx"], ctx["n_sess"], self.drop)
            h_last = con[torch.arange(U), ctx["n_sess"]]  # h_{n-1}^con of the current session
        else:
            h_last = torch.zeros(U, H)
        e = None
        if self.p.use_e:
            e, _, _ = self.user_e(ctx["users"], sample=False)
        z = self.z_prior(h_last, e)[0] if self.p.use_z else None  # prior mean (spec B.11.10)
        cond = self.conditioning(h_last, e, z)[chain_ctx]
        out, r, c, _ = gru_chunks(self.dec, chain_lens, lambda i, L: self.dec_input(chains[i, :L], cond[i]))
        states = out.new_zeros(chains.shape[0], chains.shape[1], out.shape[1]).index_put((r, c), out)
        h = self.out(states[rows[0], rows[1]])  # state after <BOS> + t items
        W, bias = self.out_weight(), self.out_bias.weight.squeeze(1)
        return h @ W[1:].t() + bias[1:]


class HNVM(TorchRecommender):
    name = "hnvm"
    requires_sessions = True
    Params = HNVMParams

    def build(self, split) -> nn.Module:
        return _HNVMNet(self.n_items, self.n_users, self.params)

    def train_batches(self, split, generator: torch.Generator, batch_size: int):
        return SessionBatches(split, generator, batch_size, self.params.n_neg if self.params.loss == "bpr" else 0,
                              self.n_items, self.params.max_session_len)

    def kl_weight(self) -> float:
        return kl_weight(int(self.net.step), self.params.kl_anneal_steps)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.net.elbo_terms(batch)
        beta = self.kl_weight()
        if self.net.training and torch.is_grad_enabled():
            self.net.step += 1
        n = t["n_tokens"].clamp(min=1)
        self.last_terms = {k: float(v.detach()) / float(n) for k, v in t.items() if k != "n_tokens"} | {"beta": beta}
        return (t["rec"] + beta * (t["kl_z"] + t["kl_e"])) / n

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        contexts, chains, chain_ctx, rows = context_groups(batch, self.params.max_session_len)
        ctx = context_tensors(contexts)
        x, lens = chain_tensors(chains, self.net.bos)
        dev = self.device
        ctx = {k: v.to(dev) for k, v in ctx.items()}
        return self.net.score_contexts(ctx, x.to(dev), lens, torch.from_numpy(chain_ctx).to(dev),
                                       torch.from_numpy(rows).to(dev))
