"""HNVM: the KL term, the annealing schedule, batching/scoring consistency, overfitting a tiny data set,
save/load, ablation switches."""

import numpy as np
import pytest
import torch

from _tiny_sessions import fit_tiny, tiny_split, train_positions
from llmrec.evaluation.evaluator import evaluate
from llmrec.models import build_model
from llmrec.models.base import HistoryBatch, Recommender
from llmrec.models.hnvm import kl_diag_gaussians, kl_weight
from llmrec.training.hierarchical import context_groups, gru_chunks

SMALL = dict(hidden=32, emb_dim=32, z_dim=8, e_dim=8, mlp_hidden=32, dropout=0.0, n_neg=16)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    lv_q, lv_p = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = torch.distributions.Independent(torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()), 1)
    p = torch.distributions.Independent(torch.distributions.Normal(mu_p, (0.5 * lv_p).exp()), 1)
    ref = torch.distributions.kl_divergence(q, p)
    assert torch.allclose(kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p), ref, atol=1e-5)
    assert torch.allclose(kl_diag_gaussians(mu_q, lv_q, mu_q, lv_q), torch.zeros(5), atol=1e-6)


def test_kl_annealing_schedule():
    assert kl_weight(0, 100) == 0.0
    assert kl_weight(25, 100) == pytest.approx(0.25)
    assert kl_weight(100, 100) == 1.0 and kl_weight(10_000, 100) == 1.0
    assert kl_weight(0, 0) == 1.0  # no annealing


def test_gru_chunks_equals_per_sequence_runs():
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, batch_first=True)
    lens = torch.tensor([5, 1, 3, 7, 2] * 5)
    x = torch.randn(len(lens), 7, 3)
    out, r, c, last = gru_chunks(gru, lens, lambda i, L: x[i, :L], waste=1.0)
    for k in range(len(lens)):
        ref, _ = gru(x[k : k + 1, : lens[k]])
        sel = r == k
        assert torch.allclose(out[sel][torch.argsort(c[sel])], ref[0], atol=1e-6)
        assert torch.allclose(last[k], ref[0, -1], atol=1e-6)


def test_context_groups_share_chains():
    b = HistoryBatch(np.array([0, 0, 0, 1]), [np.arange(5)] * 4,
                     sessions=[[np.array([0, 1]), np.array([2, 3, 4])[:t]] for t in (0, 2, 3)] + [[np.array([7])]])
    contexts, chains, chain_ctx, rows = context_groups(b)
    assert len(contexts) == 2 and len(chains) == 2  # one chain per user: the longest prefix
    assert rows[1].tolist() == [0, 2, 3, 1]
    contexts, chains, chain_ctx, rows = context_groups(b, max_len=2)  # windows of max_len - 1 = 1 item
    assert rows[1].tolist() == [0, 1, 1, 1]
    assert [c.tolist() for c in chains if len(c)] and all(len(c) <= 1 for c in chains)


@pytest.fixture(scope="module")
def fitted():
    return fit_tiny("hnvm", dict(SMALL, kl_anneal_steps=20))


def test_overfits_tiny_data(fitted):
    sp, m, losses = fitted
    assert losses[-1] < 0.5 * losses[0]
    assert int(m.net.step) == 60  # one batch per epoch; the step counter drives the annealing
    assert m.kl_weight() == 1.0
    r = evaluate(m, train_positions(sp), ks=[5], mask_history=False, progress=False)
    assert r["metrics"]["Recall@5"] == 1.0


def test_save_load_identical_scores(fitted, tmp_path):
    sp, m, _ = fitted
    m.save(tmp_path / "m")
    m2 = Recommender.load(tmp_path / "m")
    b = HistoryBatch(sp.test.users[:6], sp.test.histories[:6], sessions=sp.test.sessions[:6])
    assert torch.equal(m.score(b), m2.score(b))
    assert int(m2.net.step) == int(m.net.step)
    assert not list(tmp_path.glob("m/*.pt")) and not list(tmp_path.glob("m/*.pkl"))


def test_scoring_is_batch_invariant(fitted):
    """A row's scores do not depend on the other rows of its batch (context/chain sharing is exact)."""
    sp, m, _ = fitted
    es = sp.test
    full = m.score(HistoryBatch(es.users, es.histories, sessions=es.sessions))
    for r in (0, len(es) - 1):
        one = m.score(HistoryBatch(es.users[r : r + 1], es.histories[r : r + 1], sessions=es.sessions[r : r + 1]))
        assert torch.allclose(full[r], one[0], atol=1e-5)
    # without session boundaries the history is read as one current session: still (B, n_items)
    assert m.score(HistoryBatch(es.users[:2], es.histories[:2])).shape == (2, sp.n_items)


@pytest.mark.parametrize("params", [dict(use_e=False), dict(use_z=False), dict(use_e=False, use_z=False),
                                    dict(e_prior="standard_normal", loss="ce", max_session_len=3, tie_embeddings=True)])
def test_variants_train_and_score(params):
    sp = tiny_split()
    m = build_model("hnvm", dict(SMALL, **params))
    m.fit(sp, epochs=2, batch_size=4, lr=0.01, patience=None, progress=False)
    s = m.score(HistoryBatch(sp.test.users, sp.test.histories, sessions=sp.test.sessions))
    assert s.shape == (len(sp.test), sp.n_items) and torch.isfinite(s).all()
    if not params.get("use_e", True):
        assert not hasattr(m.net, "q_e_mu")
    if not params.get("use_z", True):
        assert not hasattr(m.net, "prior")


@pytest.mark.parametrize("name", ["hnvm", "hrnn"])
def test_needs_session_protocol(name):
    from llmrec.data.splits import leave_one_out

    sp = leave_one_out(tiny_split().dataset)
    with pytest.raises(ValueError, match=f"{name} needs the session protocol"):
        build_model(name, {}).fit(sp, epochs=1, progress=False)
