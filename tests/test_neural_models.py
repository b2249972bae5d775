"""The neural baselines (BPR-MF, NeuMF, GRU4Rec, Caser, SASRec, BERT4Rec) on tiny synthetic data."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest
import torch

from conftest import make_raw, rng_sequences
from llmrec.data.dataset import DataConfig, prepare_raw
from llmrec.data.splits import EvalSet, leave_one_out
from llmrec.evaluation.evaluator import evaluate
from llmrec.models import HistoryBatch, Recommender, build_model

SMALL = {
    "bpr": {"dim": 16},
    "ncf": {"factors": 8, "layers": 3},
    "gru4rec": {"hidden": 16, "max_len": 10},
    "caser": {"d": 16, "nh": 4, "nv": 2},
    "sasrec": {"hidden": 16, "max_len": 10, "loss": "ce", "dropout": 0.1},
    "sasrec-bce": {"hidden": 16, "max_len": 10, "loss": "bce", "dropout": 0.1},
    "sasrec-bert-from-start": {"hidden": 16, "max_len": 10, "loss": "ce", "dropout": 0.1, "block": "bert",
                               "positions": "from_start", "emb_scale": False, "train_windows": "all", "window_stride": 3},
    "bert4rec": {"hidden": 16, "max_len": 10, "dropout": 0.1, "mask_prob": 0.4},
}


def _model(key):
    return build_model("sasrec" if key.startswith("sasrec") else key, SMALL[key])


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture(scope="module")
def toy():
    return leave_one_out(prepare_raw(make_raw(rng_sequences(n_users=40, n_items=30, min_len=4, max_len=14, seed=3)), DataConfig(name="toy")))


def _batch(sp, n=7):
    return HistoryBatch(sp.test.users[:n], sp.test.histories[:n])


@pytest.mark.parametrize("key", list(SMALL))
def test_fit_score_save_load(key, toy, tmp_path):
    m = _model(key)
    m.fit(toy, epochs=3, batch_size=16, lr=0.01, patience=None, progress=False)
    hist = m.fit_info["history"]
    assert len(hist) == 3 and m.fit_info["epochs_run"] == 3
    assert hist[-1]["loss"] < hist[0]["loss"], [h["loss"] for h in hist]
    b = _batch(toy)
    s = m.score(b)
    assert s.shape == (len(b), toy.n_items) and s.dtype == torch.float32 and torch.isfinite(s).all()
    m.save(tmp_path / "m")
    m2 = Recommender.load(tmp_path / "m")
    assert type(m2) is type(m)
    assert torch.equal(m2.score(b), s)
    r = evaluate(m2, toy.test, ks=[10], progress=False)["metrics"]
    assert 0.0 <= r["HR@10"] <= 1.0


@pytest.mark.parametrize("key", ["bpr", "ncf", "caser"])
def test_unknown_user_falls_back(key, toy):
    m = _model(key).fit(toy, epochs=1, batch_size=16, progress=False)
    b = HistoryBatch(np.array([-1, int(toy.test.users[0])]), [toy.test.histories[0], toy.test.histories[0]])
    s = m.score(b)
    assert s.shape == (2, toy.n_items) and torch.isfinite(s).all()
    assert not torch.equal(s[0], s[1])


@pytest.mark.parametrize("key", ["gru4rec", "sasrec", "bert4rec", "caser"])
def test_empty_and_long_histories(key, toy):
    m = _model(key).fit(toy, epochs=1, batch_size=16, progress=False)
    long = np.arange(toy.n_items, dtype=np.int64)  # longer than max_len
    b = HistoryBatch(np.array([0, 1]), [np.zeros(0, dtype=np.int64), long])
    s = m.score(b)
    assert s.shape == (2, toy.n_items) and torch.isfinite(s).all()


def test_sasrec_overfits_a_deterministic_sequence():
    """Every user walks the same cycle 1 -> 2 -> ... -> 25 -> 1 from a random start: the next item is a
    function of the last one, so a working SASRec must reach HR@1 ~ 1 on its own training positions."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        start, L = int(rng.integers(1, 26)), int(rng.integers(6, 12))
        rows += [(u, (start + k - 1) % 25 + 1, k) for k in range(L)]
    sp = leave_one_out(prepare_raw(make_raw(rows), DataConfig(name="cycle")))
    m = build_model("sasrec", {"hidden": 32, "max_len": 12, "loss": "ce", "dropout": 0.0, "heads": 2})
    # validation unmasked: with masking this data is solved after one epoch and the best epoch would be the first
    m.fit(sp, epochs=12, batch_size=8, lr=0.005, patience=None, progress=False, mask_history=False)
    # training positions: predict the last training item from the ones before it
    users = np.array([u for u in range(sp.n_users) if len(sp.train[u]) >= 2])
    train_set = EvalSet(users=users, histories=[sp.train[u][:-1] for u in users],
                        targets=np.array([sp.train[u][-1] for u in users]), name="train")
    r = evaluate(m, train_set, ks=[1], mask_history=False, progress=False)["metrics"]
    assert r["HR@1"] >= 0.95, r
    r = evaluate(m, sp.test, ks=[1], mask_history=False, progress=False)["metrics"]
    assert r["HR@1"] >= 0.9, r


@pytest.mark.parametrize("block", ["sasrec", "bert"])
def test_sasrec_from_start_output_is_the_prefix_output(block, toy):
    """positions: from_start -- the output at position j of a left-aligned sequence equals the output for the prefix
    of its first j + 1 items scored alone (what makes a loss at every position train exactly RecBole's prefix rows);
    from_end does not have that property."""
    from llmrec.models.base import HistoryBatch as HB

    for positions, same in (("from_start", True), ("from_end", False)):
        m = build_model("sasrec", {"hidden": 16, "max_len": 10, "block": block, "positions": positions, "dropout": 0.1})
        m.n_items, m.n_users = toy.n_items, toy.n_users
        m.net = m.build(toy).eval()
        seq = np.asarray([3, 7, 1, 12, 5, 9])
        with torch.no_grad():
            x = torch.from_numpy(seq + 1)[None]  # one full-length row: no padding either way
            full = m.net.logits(m.net(x))[0]  # (6, n_items): output at every position
            alone = m.score(HB([0] * 6, [seq[: j + 1] for j in range(6)]))
        assert torch.allclose(full, alone, atol=1e-5) is same


def test_sasrec_ce_logits_only_at_targets(toy):
    """The CE loss equals a mean over target positions of a full log-softmax (padding contributes nothing)."""
    m = _model("sasrec")
    m.n_items, m.n_users = toy.n_items, toy.n_users
    m.net = m.build(toy)
    m.net.eval()
    batch = next(iter(m.train_batches(toy, torch.Generator().manual_seed(0), 16)))
    with torch.no_grad():
        h = m.net(batch["x"])
        lp = torch.log_softmax(m.net.logits(h), -1)
        y = batch["y"]
        at = y != 0
        ref = -lp[at].gather(1, (y[at] - 1)[:, None]).mean()
        assert torch.allclose(m.loss(batch), ref, atol=1e-5)
    assert ((batch["x"] == 0) <= (batch["y"] == 0)).all()  # no target where the input is padding


def test_batches_are_tensors_and_seeded(toy):
    for key in ["bpr", "ncf", "gru4rec", "caser", "sasrec-bce", "bert4rec"]:
        m = _model(key)
        m.n_items, m.n_users = toy.n_items, toy.n_users
        m.net = m.build(toy)
        a = list(m.train_batches(toy, torch.Generator().manual_seed(5), 16))
        b = list(m.train_batches(toy, torch.Generator().manual_seed(5), 16))
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            assert all(torch.is_tensor(v) and torch.equal(v, y[k]) for k, v in x.items())


def test_caser_windows(toy):
    m = build_model("caser", {"L": 3, "T": 2, "d": 8, "nh": 2, "nv": 1})
    m.n_items, m.n_users = toy.n_items, toy.n_users
    m.net = m.build(toy)
    m._windows(toy)
    D = m._data
    assert len(D["x"]) == sum(max(len(s) - 1, 0) for s in toy.train)
    u = int(D["users"][0])
    s = toy.train[u] + 1
    # first window of the first user: two pads then s_0 predicts s_1, s_2
    assert D["x"][0].tolist() == [0, 0, int(s[0])]
    assert D["y"][0].tolist() == [int(s[1]), int(s[2]) if len(s) > 2 else 0]


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_neumf_full_ranking_matches_pairwise_forward(layers):
    """The fast scorer (first MLP layer split into user and item halves, user chunks) equals forward()."""
    from llmrec.models.ncf import NCFParams, NeuMFNet

    torch.manual_seed(0)
    net = NeuMFNet(7, 50, NCFParams(factors=4, layers=layers)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    users = torch.tensor([0, 3, -1, 6])
    ref = net(users, torch.arange(50).expand(4, 50))
    assert torch.allclose(net.all_items(users, chunk_elems=100), ref, atol=1e-5)


@given(st.lists(st.integers(0, 25), min_size=1, max_size=12), st.integers(2, 7), st.data())
@settings(max_examples=80, deadline=None)
def test_windows_hold_every_target_once(lengths, size, data):
    """Cut from the end, window ends ``stride`` apart: each (sequence, position >= 1) is a kept target (one of its
    window's last ``keep``) in exactly one window, with the items just before it in the sequence as its context,
    and at least size - stride of them when the sequence has them."""
    from llmrec.training.data import windows

    stride = data.draw(st.one_of(st.none(), st.integers(1, size - 1)))
    seqs = [np.arange(100 * u, 100 * u + n) for u, n in enumerate(lengths)]
    rows, owner, keep = windows(seqs, size, stride)
    targets = [(int(o), int(t)) for w, o, k in zip(rows, owner, keep) for t in w[len(w) - k:]]
    assert sorted(targets) == sorted((u, int(t)) for u, s in enumerate(seqs) for t in s[1:])
    step = size - 1 if stride is None else stride
    for w, k in zip(rows, keep):
        assert 2 <= len(w) <= size and (np.diff(w) == 1).all()  # consecutive items of one sequence
        assert 1 <= k <= len(w) - 1
        assert len(w) - k >= min(size - step, w[0] % 100 + len(w) - k)  # context before the first kept target


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_sasrec_all_windows_train_every_target(loss):
    """train_windows: all -- a sequence longer than max_len + 1 gives several rows, and the targets of one epoch
    are all the training targets; 'last' (the paper) keeps the last max_len only."""
    sp = leave_one_out(prepare_raw(make_raw(rng_sequences(n_users=12, n_items=40, min_len=20, max_len=30, seed=1)),
                                   DataConfig(name="toy")))
    n_targets = sum(max(len(s) - 1, 0) for s in sp.train)
    seen = {}
    modes = {"last": {}, "all": {}, "all-from-start": {"positions": "from_start"}, "stride-2": {"window_stride": 2},
             "stride-1-from-start": {"window_stride": 1, "positions": "from_start"}}
    for mode, extra in modes.items():
        m = build_model("sasrec", {"hidden": 8, "max_len": 6, "loss": loss,
                                   "train_windows": "last" if mode == "last" else "all", **extra})
        m.n_items, m.n_users = sp.n_items, sp.n_users
        m.net = m.build(sp)
        batches = list(m.train_batches(sp, torch.Generator().manual_seed(0), 8))
        seen[mode] = sorted(int(t) for b in batches for t in b["y"][b["y"] != 0])
        assert all(((b["x"] == 0) <= (b["y"] == 0)).all() for b in batches)
        if loss == "bce":
            assert all(((b["neg"] != 0) == (b["y"] != 0)).all() for b in batches)
        if mode.startswith("stride"):  # every kept target has at least max_len + 1 - stride items before it
            ctx = [int(c) for b in batches for c in ((b["x"] != 0).cumsum(1)[b["y"] != 0])]
            stride = extra["window_stride"]
            assert min(ctx) >= 1 and sum(c < 7 - stride for c in ctx) <= len(sp.train) * (6 - stride)

    all_targets = sorted(int(t) + 1 for s in sp.train for t in s[1:])
    assert all(seen[m] == all_targets for m in modes if m != "last")
    assert len(seen["last"]) == 6 * len(sp.train) < n_targets
