import numpy as np
import pytest

from conftest import make_raw, rng_sequences
from llmrec.data.dataset import DataConfig, prepare_raw
from llmrec.data.splits import leave_one_out, sample_candidates, sessionize


def toy():
    return prepare_raw(make_raw(rng_sequences()), DataConfig(name="toy"))


def test_leave_one_out_no_leakage():
    ds = toy()
    sp = leave_one_out(ds)
    for k, u in enumerate(sp.test.users):
        seq = ds.sequence(u)
        assert sp.test.targets[k] == seq[-1] and sp.valid.targets[k] == seq[-2]
        assert np.array_equal(sp.test.histories[k], seq[:-1])  # test history includes the valid item
        assert np.array_equal(sp.valid.histories[k], seq[:-2])
        assert np.array_equal(sp.train[u], seq[:-2])  # training never sees valid/test targets
    assert len(sp.test) == ds.n_users


def test_short_users_are_train_only():
    rows = [(1, 1, 0), (1, 2, 1), (2, 1, 0), (2, 2, 1), (2, 3, 2)]
    ds = prepare_raw(make_raw(rows), DataConfig(name="toy", id_order="original"))
    sp = leave_one_out(ds)
    assert sp.test.users.tolist() == [1]
    assert sp.train[0].tolist() == [0, 1]
    assert sp.info["users_not_evaluated"] == 1


def test_sessionize_gap_boundaries():
    # gaps: 1800 exactly (same session), 1801 (new), equal timestamps (same)
    rows = [(1, 1, 0), (1, 2, 1800), (1, 3, 3601), (1, 4, 3601), (2, 1, 0), (2, 2, 10)]
    ds = prepare_raw(make_raw(rows), DataConfig(name="toy", id_order="original"))
    sid = sessionize(ds, gap=1800)
    assert sid.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        sessionize(prepare_raw(make_raw(rows, has_timestamps=False), DataConfig(name="toy")))


def test_sampled_candidates_exclude_history_and_are_seeded():
    ds = toy()
    sp = leave_one_out(ds)
    seqs = ds.sequences()
    ex = [seqs[u] for u in sp.test.users]
    c1 = sample_candidates(sp.test, ds.n_items, 10, seed=3, exclude=ex)
    c2 = sample_candidates(sp.test, ds.n_items, 10, seed=3, exclude=ex)
    assert np.array_equal(c1, c2)
    assert (c1[:, 0] == sp.test.targets).all()
    for r in range(len(c1)):
        negs = set(c1[r, 1:].tolist())
        assert len(negs) == 10
        assert not negs & set(ex[r].tolist())
    pop = np.bincount(np.concatenate(sp.train), minlength=ds.n_items)
    c3 = sample_candidates(sp.test, ds.n_items, 5, strategy="popularity", popularity=pop, seed=1, exclude=ex)
    assert c3.shape == (len(sp.test), 6)
