import numpy as np
import pytest
import torch

from conftest import make_raw, rng_sequences
from llmrec.data.dataset import DataConfig, prepare_raw
from llmrec.data.splits import leave_one_out
from llmrec.evaluation.evaluator import evaluate
from llmrec.models import HistoryBatch, Recommender, build_model


def toy_split(**kw):
    return leave_one_out(prepare_raw(make_raw(rng_sequences(**kw)), DataConfig(name="toy")))


class Constant(Recommender):
    name = "constant"

    def fit(self, split, **kw):
        self.n_items = split.n_items
        return self

    def score(self, batch):
        return torch.zeros(len(batch), self.n_items)


def test_constant_scores_get_no_credit():
    sp = toy_split(n_items=200)
    m = Constant().fit(sp)
    r = evaluate(m, sp.test, ks=[1, 10], progress=False)["metrics"]
    assert r["HR@10"] == 0.0 and r["NDCG@10"] == 0.0
    r = evaluate(m, sp.test, ks=[1, 10], mask_history=False, progress=False)["metrics"]
    assert r["HR@10"] == 0.0


class Oracle(Recommender):
    """Knows the test targets: must get HR@1 = 1 whatever masking does."""

    name = "oracle"

    def __init__(self, targets):
        super().__init__()
        self.targets = targets

    def score(self, batch):
        s = torch.zeros(len(batch), self.n_items)
        s[torch.arange(len(batch)), torch.as_tensor(self.targets[: len(batch)])] = 1.0
        return s


def test_oracle_and_masked_target_never_hidden():
    sp = toy_split()
    m = Oracle(sp.test.targets)
    m.n_items = sp.n_items
    r = evaluate(m, sp.test, ks=[1], batch_size=10_000, progress=False)["metrics"]
    assert r["HR@1"] == 1.0


def test_history_masking_changes_rank():
    # a model that scores history items highest: masked, the target rises to rank 1
    sp = toy_split(n_items=50)

    class Hist(Recommender):
        name = "hist"

        def score(self, batch):
            s = torch.zeros(len(batch), sp.n_items)
            s[torch.arange(len(batch)), torch.as_tensor(sp.test.targets)] = 0.5
            return s + batch.history_mask(sp.n_items).float()

    m = Hist()
    m.n_items = sp.n_items
    masked = evaluate(m, sp.test, ks=[1], batch_size=10_000, progress=False)["metrics"]["HR@1"]
    unmasked = evaluate(m, sp.test, ks=[1], batch_size=10_000, mask_history=False, progress=False)["metrics"]["HR@1"]
    assert masked == 1.0 and unmasked == 0.0


@pytest.mark.parametrize("name", ["pop", "itemknn", "nextid"])
def test_save_load_identical_scores(tmp_path, name):
    sp = toy_split()
    m = build_model(name).fit(sp)
    m.save(tmp_path / "m")
    m2 = Recommender.load(tmp_path / "m")
    b = HistoryBatch(sp.test.users[:5], sp.test.histories[:5])
    assert torch.equal(m.score(b), m2.score(b))
    top, _ = m2.recommend(b, k=5)
    assert top.shape == (5, 5)
    hm = b.history_mask(sp.n_items)
    assert not hm.gather(1, top).any()  # recommendations never repeat the history by default


def test_pop_counts_and_itemknn_cosine_by_hand():
    # users: 1:[a,b,c,x], 2:[a,b,c,x], 3:[b,c,d,x]; training = all but last two
    rows = [(1, 1, 0), (1, 2, 1), (1, 8, 2), (1, 9, 3),
            (2, 1, 0), (2, 2, 1), (2, 8, 2), (2, 9, 3),
            (3, 2, 0), (3, 3, 1), (3, 8, 2), (3, 9, 3)]
    ds = prepare_raw(make_raw(rows), DataConfig(name="toy", id_order="original"))
    sp = leave_one_out(ds)
    pop = build_model("pop").fit(sp)
    # train: u1 [1,2], u2 [1,2], u3 [2,3] -> counts item1=2, item2=3, item3=1
    idx = {iid: k for k, iid in enumerate(ds.item_ids)}
    assert pop.counts[idx["2"]] == 3 and pop.counts[idx["1"]] == 2 and pop.counts[idx["3"]] == 1
    knn = build_model("itemknn", {"k": 10}).fit(sp)
    b = HistoryBatch(np.array([0]), [np.array([idx["1"]])])
    s = knn.score(b)[0]
    # sim(1,2) = 2 / (sqrt(2) sqrt(3)); sim(1,3) = 0
    assert s[idx["2"]].item() == pytest.approx(2 / (np.sqrt(2) * np.sqrt(3)), rel=1e-6)
    assert s[idx["3"]].item() == 0.0


def test_nextid_ranks_max_plus_one_first():
    sp = toy_split()
    m = build_model("nextid").fit(sp)
    b = HistoryBatch(np.array([0]), [np.array([3, 7, 5])])
    top, _ = m.recommend(b, k=3, mask_history=False)
    assert top[0].tolist() == [8, 9, 10]


def test_itemknn_recent_and_decay_weights():
    rows = [(1, 1, 0), (1, 2, 1), (1, 8, 2), (1, 9, 3),
            (2, 1, 0), (2, 2, 1), (2, 8, 2), (2, 9, 3),
            (3, 2, 0), (3, 3, 1), (3, 8, 2), (3, 9, 3)]
    ds = prepare_raw(make_raw(rows), DataConfig(name="toy", id_order="original"))
    sp = leave_one_out(ds)
    idx = {iid: k for k, iid in enumerate(ds.item_ids)}
    # train sets: item1 {u1,u2}, item2 {u1,u2,u3}, item3 {u3}: sim(2,3) = 1/sqrt(3), sim(1,2) = 2/sqrt(6)
    knn = build_model("itemknn", {"k": 10, "position_decay": 0.5}).fit(sp)
    b = HistoryBatch(np.array([0]), [np.array([idx["3"], idx["1"], idx["3"]])])  # item 3 most recent
    s = knn.score(b)[0]
    # item 2 gets w(3)*sim(3,2) + w(1)*sim(1,2) = 1 * 1/sqrt(3) + 0.5 * 2/sqrt(6)
    assert s[idx["2"]].item() == pytest.approx(1 / np.sqrt(3) + 0.5 * 2 / np.sqrt(6), rel=1e-6)
    recent = build_model("itemknn", {"k": 10, "recent": 1}).fit(sp)
    assert recent.score(b)[0][idx["2"]].item() == pytest.approx(1 / np.sqrt(3), rel=1e-6)


def test_nextid_measures_the_p5_id_leak(shared_data):
    from llmrec.data.dataset import load_dataset

    res = {}
    for order in ("original", "random"):
        sp_ = leave_one_out(load_dataset(DataConfig(name="beauty", id_order=order)))
        for name in ("nextid", "pop"):
            m = build_model(name).fit(sp_)
            res[name, order] = evaluate(m, sp_.test, ks=[10], progress=False, batch_size=2048)["metrics"]["HR@10"]
    assert res["nextid", "original"] > 3 * res["pop", "original"]  # the leak: ids alone beat popularity
    assert res["nextid", "random"] < res["pop", "random"] / 5  # remapped ids: noise
    assert res["pop", "original"] == pytest.approx(res["pop", "random"])  # pop doesn't read ids


def _kept_by_rule(S: np.ndarray, k: int) -> list[set[int]]:
    """Each item's neighbours by the documented rule: the k largest similarities, lower item index first on ties."""
    out = []
    for i, row in enumerate(S):
        nz = [j for j in range(len(row)) if row[j] != 0 and j != i]
        out.append(set(sorted(nz, key=lambda j: (-row[j], j))[:k]))
    return out


def test_itemknn_breaks_neighbour_ties_by_item_index_whatever_the_numbering():
    import scipy.sparse as sps

    rng = np.random.default_rng(0)
    n, k = 12, 3
    S = rng.choice([0.0, 0.25, 0.5, 0.75], size=(n, n)).astype(np.float32)  # many equal similarities
    np.fill_diagonal(S, 0.0)
    for perm in [np.arange(n), *(rng.permutation(n) for _ in range(5))]:
        P = np.empty(n, dtype=np.int64)
        P[perm] = np.arange(n)  # old index perm[new] -> new index
        Sp = S[perm][:, perm]  # the same similarities, items renumbered
        # storage order inside a row must not matter either: shuffle the entries before building the matrix
        r, c = np.nonzero(Sp)
        o = rng.permutation(len(r))
        knn = build_model("itemknn", {"k": k})
        knn.n_items = n
        knn._set_topk(sps.csr_matrix((Sp[r[o], c[o]], (r[o], c[o])), shape=(n, n)))
        kept = [set(knn.nbr_idx[i][knn.nbr_val[i] > 0].tolist()) for i in range(n)]
        assert kept == _kept_by_rule(Sp, k)
        # what the rule does not decide is the same under every numbering: neighbours above the k-th similarity
        for new_i in range(n):
            row = S[perm[new_i]]
            kth = np.sort(row)[::-1][k - 1]
            assert {int(P[j]) for j in np.flatnonzero(row > kth)} <= kept[new_i]
