"""A tiny session data set and a short fit on it, shared by the HNVM and HRNN tests."""

from __future__ import annotations

import numpy as np

from conftest import make_raw
from llmrec.config import split_config
from llmrec.data.dataset import DataConfig, prepare_raw
from llmrec.data.sessions import session_split
from llmrec.data.splits import EvalSet
from llmrec.models import build_model

H = 3600


def tiny_split():
    """8 users; each repeats its own 4-item session 5 times (items per user are disjoint except one shared)."""
    rows = []
    for u in range(8):
        items = [100 + 4 * u + k for k in range(3)] + [1]
        for s in range(5):
            for k, it in enumerate(items):
                rows.append((u + 1, it, s * 2 * H + k))
    ds = prepare_raw(make_raw(rows), DataConfig(name="toy", id_seed=1))
    return session_split(ds, split_config(protocol="session", session_targets="all", session_include_first=True))


def train_positions(split) -> EvalSet:
    """Every position of every training session (from the second session on), as next-item examples."""
    users, hist, sess, tg = [], [], [], []
    for u, ss in enumerate(split.train_sessions):
        for n in range(1, len(ss)):
            for t in range(len(ss[n])):
                parts = list(ss[:n]) + [ss[n][:t]]
                users.append(u)
                sess.append(parts)
                hist.append(np.concatenate(parts))
                tg.append(ss[n][t])
    return EvalSet(users=np.array(users), histories=hist, targets=np.array(tg), sessions=sess, name="train")


def fit_tiny(name: str, params: dict):
    """(split, model, per-epoch losses): 60 epochs of one batch on the tiny split (HNVM and HRNN tests)."""
    sp = tiny_split()
    m = build_model(name, params)
    losses = []
    m.fit(sp, epochs=60, batch_size=24, lr=0.02, patience=None, progress=False, eval_every=100,
          callbacks=[lambda model, epoch, rec: losses.append(rec["loss"])])
    return sp, m, losses
