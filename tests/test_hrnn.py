"""HRNN (Quadrana et al. 2017): overfits a tiny session data set, save/load, both variants."""

import pytest
import torch

from _tiny_sessions import fit_tiny, tiny_split, train_positions
from llmrec.evaluation.evaluator import evaluate
from llmrec.models import build_model
from llmrec.models.base import HistoryBatch, Recommender

SMALL = dict(session_hidden=32, user_hidden=32, emb_dim=32, dropout=0.0, n_neg=16, init_range=0.1732)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture(scope="module")
def fitted():
    return fit_tiny("hrnn", SMALL)


def test_overfits_tiny_data(fitted):
    sp, m, losses = fitted
    assert losses[-1] < 0.5 * losses[0]
    r = evaluate(m, train_positions(sp), ks=[5], mask_history=False, progress=False)
    assert r["metrics"]["Recall@5"] == 1.0


def test_save_load_and_batch_invariance(fitted, tmp_path):
    sp, m, _ = fitted
    m.save(tmp_path / "m")
    m2 = Recommender.load(tmp_path / "m")
    es = sp.test
    b = HistoryBatch(es.users, es.histories, sessions=es.sessions)
    full = m.score(b)
    assert torch.equal(full, m2.score(b))
    one = m.score(HistoryBatch(es.users[-1:], es.histories[-1:], sessions=es.sessions[-1:]))
    assert torch.allclose(full[-1], one[0], atol=1e-5)


@pytest.mark.parametrize("params", [dict(variant="init"), dict(loss="ce", max_session_len=3)])
def test_variants(params):
    sp = tiny_split()
    m = build_model("hrnn", dict(SMALL, **params))
    m.fit(sp, epochs=2, batch_size=4, lr=0.01, patience=None, progress=False)
    s = m.score(HistoryBatch(sp.test.users, sp.test.histories, sessions=sp.test.sessions))
    assert s.shape == (len(sp.test), sp.n_items) and torch.isfinite(s).all()
