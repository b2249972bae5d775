"""Session batching and GRU helpers shared by the hierarchical session models (HNVM, HRNN).

- :func:`gru_chunks` runs a GRU over padded sequences in length-sorted chunks and returns outputs and last states;
- :func:`session_batch` / :class:`SessionBatches`: an epoch of whole users grouped so that a batch holds at
  most ``batch_size`` training sessions (each session encoded once per epoch, the context GRU exact);
- :func:`context_groups` / :func:`context_tensors` / :func:`chain_tensors` / :func:`context_states`: scoring
  inputs from ``HistoryBatch.sessions`` (earlier sessions as context, the current session's prefix as a chain);
- :func:`bpr_loss`, :func:`shift_in`, :func:`uniform_init`.

They used to live in ``models/hnvm.py`` and were imported by ``models/hrnn.py``; a model file never imports
another model file, so they live here, below both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrec.data.sessions import group_users_by_sessions, pad_sessions
from llmrec.models.base import HistoryBatch


def gru_chunks(gru: nn.GRU, lengths: torch.Tensor, make_input, h0: torch.Tensor | None = None,
               waste: float = 1.5, max_rows: int = 256):
    """Run ``gru`` over B right-padded sequences with ``lengths`` >= 1, in chunks of rows sorted by length.

    ``make_input(rows, L)`` returns the (len(rows), L, D) inputs of those rows (their first L steps). Padding
    sits after each sequence, so the outputs at t < length are exact; chunks of similar lengths keep the
    padding waste under ``waste`` x (a packed sequence is several times slower on CPU). Returns the outputs
    of the valid steps (T, H) with their (row, step) indices, and each row's last output (B, H)."""
    lens = lengths.tolist()
    order = sorted(range(len(lens)), key=lambda r: -lens[r])
    chunks, cur, real = [], [], 0
    for r in order:
        if cur and (len(cur) >= max_rows or (len(cur) + 1) * lens[cur[0]] > waste * (real + lens[r]) and len(cur) >= 8):
            chunks.append(cur)
            cur, real = [], 0
        cur.append(r)
        real += lens[r]
    if cur:
        chunks.append(cur)
    outs, rows, cols, lasts = [], [], [], []
    for ch in chunks:
        idx = torch.tensor(ch, dtype=torch.long, device=lengths.device)
        Lc = lens[ch[0]]
        o, _ = gru(make_input(idx, Lc), None if h0 is None else h0[idx].unsqueeze(0).contiguous())
        lc = lengths[idx]
        mask = torch.arange(Lc, device=lengths.device)[None, :] < lc[:, None]
        r, c = mask.nonzero(as_tuple=True)
        outs.append(o[r, c])
        rows.append(idx[r])
        cols.append(c)
        lasts.append(o[torch.arange(len(ch), device=o.device), lc - 1])
    inv = torch.empty(len(order), dtype=torch.long, device=lengths.device)
    inv[torch.tensor(order, dtype=torch.long, device=lengths.device)] = torch.arange(len(order), device=lengths.device)
    return torch.cat(outs), torch.cat(rows), torch.cat(cols), torch.cat(lasts)[inv]


def shift_in(tokens: torch.Tensor, lengths: torch.Tensor, bos: int) -> torch.Tensor:
    """Decoder inputs: <BOS> then the session's items but the last, (S, L) right-padded with 0."""
    inp = torch.zeros_like(tokens)
    inp[:, 0] = bos
    inp[:, 1:] = tokens[:, :-1]
    L = tokens.shape[1]
    inp[torch.arange(L)[None, :] >= lengths[:, None]] = 0
    return inp


def uniform_init(module: nn.Module, a: float) -> None:
    """Weights ~ U(-a, a) (variance a^2/3; a = 0.1732 gives the paper's 0.01), biases 0."""
    for name, p in module.named_parameters():
        if "bias" in name.split(".")[-1] or name.endswith("_bias.weight"):
            nn.init.zeros_(p)
        else:
            nn.init.uniform_(p, -a, a)


def session_batch(train_sessions: list[list[np.ndarray]], users: np.ndarray, max_len: int | None = None) -> dict[str, torch.Tensor]:
    """Tensors for a group of whole users: their sessions (tokens = item + 1; each cut to its last ``max_len``
    items), and where each sits."""
    sess, s_user, s_pos = [], [], []
    n_sess = np.array([len(train_sessions[u]) for u in users], dtype=np.int64)
    for r, u in enumerate(users.tolist()):
        for n, s in enumerate(train_sessions[u]):
            sess.append(s if max_len is None else s[-max_len:])
            s_user.append(r)
            s_pos.append(n)
    items, lens = pad_sessions(sess, shift=1)
    N = int(n_sess.max())
    ctx_idx = np.full((len(users), N), -1, dtype=np.int64)
    ctx_idx[np.array(s_user), np.array(s_pos)] = np.arange(len(sess))
    return {
        "users": torch.from_numpy(users.astype(np.int64)),
        "items": torch.from_numpy(items),
        "lengths": torch.from_numpy(lens),
        "n_sess": torch.from_numpy(n_sess),
        "ctx_idx": torch.from_numpy(ctx_idx),
        "sess_user": torch.tensor(s_user, dtype=torch.long),
        "sess_pos": torch.tensor(s_pos, dtype=torch.long),
    }


class SessionBatches:
    """One epoch of user-group batches (sized, for the progress bar); negatives drawn from ``generator``."""

    def __init__(self, split, generator: torch.Generator, batch_size: int, n_neg: int, n_items: int,
                 max_len: int | None = None):
        self.max_len = max_len
        ts = split.train_sessions
        n_sess = np.array([len(s) for s in ts], dtype=np.int64)
        users = np.flatnonzero(n_sess > 0)
        perm = users[torch.randperm(len(users), generator=generator).numpy()]
        self.groups = group_users_by_sessions(n_sess, perm, batch_size)
        self.negs = [torch.randint(0, n_items, (n_neg,), generator=generator) + 1 if n_neg > 0 else None
                     for _ in self.groups]
        self.ts = ts

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self):
        for g, neg in zip(self.groups, self.negs):
            b = session_batch(self.ts, g, self.max_len)
            if neg is not None:
                b["neg"] = neg
            yield b


def context_groups(batch: HistoryBatch, max_len: int | None = None):
    """Cut a scoring batch into distinct contexts (user, earlier complete sessions) and decoder chains.

    The decoder of a row reads <BOS> + the current session's prefix, or only its last ``max_len - 1`` items
    when sessions were cut to ``max_len`` in training. Rows of one context whose (uncut) prefixes are prefixes
    of one another share one chain (the longest); row r is read from chain ``rows[0, r]`` after ``rows[1, r]``
    items. Returns (contexts, chains, chain -> context index, rows)."""
    sessions = batch.sessions
    if sessions is None:
        sessions = [[h] for h in batch.histories]
    window = None if max_len is None else max(0, max_len - 1)
    ctx_key: dict = {}
    contexts: list[tuple[int, list[np.ndarray]]] = []
    chains: list[np.ndarray] = []
    chain_ctx: list[int] = []
    heads: dict[int, list[int]] = {}  # context -> its uncut chains
    rows = np.zeros((2, len(sessions)), dtype=np.int64)
    order = sorted(range(len(sessions)), key=lambda r: -len(sessions[r][-1]))
    for r in order:
        ss = sessions[r]
        earlier = [s for s in ss[:-1] if len(s)]
        prefix = np.asarray(ss[-1], dtype=np.int64)
        u = int(batch.users[r])
        key = (u, len(earlier), int(sum(len(s) for s in earlier)))
        c = ctx_key.get(key)
        if c is None:
            c = ctx_key[key] = len(contexts)
            contexts.append((u, earlier if max_len is None else [s[-max_len:] for s in earlier]))
            heads[c] = []
        if window is not None and len(prefix) > window:  # a cut window: its own chain
            rows[:, r] = len(chains), window
            chains.append(prefix[len(prefix) - window:])
            chain_ctx.append(c)
            continue
        found = -1
        for ch in heads[c]:
            if len(chains[ch]) >= len(prefix) and np.array_equal(chains[ch][: len(prefix)], prefix):
                found = ch
                break
        if found < 0:
            found = len(chains)
            chains.append(prefix)
            chain_ctx.append(c)
            heads[c].append(found)
        rows[:, r] = found, len(prefix)
    return contexts, chains, np.array(chain_ctx, dtype=np.int64), rows


def context_tensors(contexts: list[tuple[int, list[np.ndarray]]]) -> dict[str, torch.Tensor]:
    """Like :func:`session_batch` for scoring contexts (a context may have no earlier session)."""
    sess, s_user, s_pos = [], [], []
    n_sess = np.array([len(e) for _, e in contexts], dtype=np.int64)
    for r, (_, earlier) in enumerate(contexts):
        for n, s in enumerate(earlier):
            sess.append(np.asarray(s, dtype=np.int64))
            s_user.append(r)
            s_pos.append(n)
    out = {"users": torch.tensor([u for u, _ in contexts], dtype=torch.long), "n_sess": torch.from_numpy(n_sess)}
    if sess:
        items, lens = pad_sessions(sess, shift=1)
        ctx_idx = np.full((len(contexts), max(1, int(n_sess.max()))), -1, dtype=np.int64)
        ctx_idx[np.array(s_user), np.array(s_pos)] = np.arange(len(sess))
        out.update(items=torch.from_numpy(items), lengths=torch.from_numpy(lens), ctx_idx=torch.from_numpy(ctx_idx))
    return out


def chain_tensors(chains: list[np.ndarray], bos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs for scoring chains: <BOS> + prefix, right-padded; lengths = 1 + len(prefix)."""
    inp, lens = pad_sessions([np.asarray(c, dtype=np.int64) for c in chains], shift=1)
    x = torch.zeros((len(chains), inp.shape[1] + 1), dtype=torch.long)
    x[:, 0] = bos
    x[:, 1:] = torch.from_numpy(inp)
    return x, torch.from_numpy(lens) + 1


def context_states(ctx_gru: nn.GRU, h_enc: torch.Tensor, ctx_idx: torch.Tensor, n_sess: torch.Tensor,
                   drop: nn.Module) -> torch.Tensor:
    """Eq. 10 over each user's sessions: (U, N + 1, H), entry n = h_n^con (entry 0 = h_0^con = 0)."""
    U, N = ctx_idx.shape
    H = h_enc.shape[1]
    idx = torch.where(ctx_idx >= 0, ctx_idx, torch.full_like(ctx_idx, h_enc.shape[0]))
    padded = torch.cat([h_enc, h_enc.new_zeros(1, H)])[idx]  # (U, N, H), zero rows past a user's sessions
    out = h_enc.new_zeros(U, N + 1, H)
    has = torch.nonzero(n_sess > 0).flatten()
    if len(has):
        sub = padded[has]
        o, r, c, _ = gru_chunks(ctx_gru, n_sess[has], lambda i, L: sub[i, :L])
        out = out.index_put((has[r], c + 1), drop(o))
    return out


def bpr_loss(out: torch.Tensor, pos_w: torch.Tensor, pos_b: torch.Tensor, pos: torch.Tensor,
             neg_w: torch.Tensor, neg_b: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Sum over tokens of mean_j -log sigmoid(s_pos - s_neg_j) with negatives shared by the batch (a negative
    equal to the token's positive is left out)."""
    s_pos = (out * pos_w).sum(-1) + pos_b
    s_neg = out @ neg_w.t() + neg_b  # (T, n_neg)
    valid = (neg[None, :] != pos[:, None]).float()
    lo = -F.logsigmoid(s_pos[:, None] - s_neg) * valid
    return (lo.sum(1) / valid.sum(1).clamp(min=1)).sum()


# ----------------------------------------------------------------------------------------------------
# the model
