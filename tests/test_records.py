"""The records protocol (llmrec.data.records): one record per user, a seeded user split, 1:N candidates from the
training items, and training sequences without any validation / test target."""

import numpy as np
import polars as pl
import pytest
from conftest import make_raw

from llmrec.config import ConfigError, load_config, split_config
from llmrec.data.dataset import DataConfig, prepare_raw
from llmrec.data.records import fitted_sizes, random_reference, records_split


def toy(n_users=60, n_items=80, seed=0, items=None):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        L = int(rng.integers(4, 20))
        for pos, it in enumerate(rng.choice(np.arange(1, n_items + 1), size=L, replace=False)):
            rows.append((u, int(it), pos))
    return prepare_raw(make_raw(rows, items=items), DataConfig(name="toy"))


def sc(**records):
    cand = records.pop("candidates", {"n_neg": 10, "seed": 0})
    return split_config(protocol="records", records={"min_history": 5, "max_history": 8, **records}, candidates=cand)


def test_records_windows_targets_and_disjoint_users():
    ds = toy()
    sp = records_split(ds, sc(sizes=[20, 5, 6]))
    seqs = ds.sequences()
    assert (len(sp.train_records), len(sp.valid), len(sp.test)) == (20, 5, 6)
    users = [set(es.users.tolist()) for es in (sp.train_records, sp.valid, sp.test)]
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
    for es in (sp.train_records, sp.valid, sp.test):
        for u, h, t in zip(es.users, es.histories, es.targets):
            s = seqs[u]
            assert t == s[-1] and 5 <= len(h) <= 8
            assert np.array_equal(h, s[len(s) - 1 - len(h): -1])  # the most recent items before the target
    short = [u for u, s in enumerate(seqs) if len(s) < 6]
    assert short and not set(short) & set().union(*users)  # users with < min_history + 1 items are dropped
    assert sp.info["records"] == {"train": 20, "valid": 5, "test": 6}


def test_training_sequences_never_hold_a_valid_or_test_target():
    ds = toy()
    seqs = ds.sequences()
    sp = records_split(ds, sc(sizes=[20, 5, 6]))
    for es in (sp.valid, sp.test):
        for u in es.users:
            assert np.array_equal(sp.train[u], seqs[u][:-1])  # 'all': everything but the target
    held = set(sp.valid.users.tolist()) | set(sp.test.users.tolist())
    for u, s in enumerate(seqs):
        if u not in held:  # training records and users who are not records keep their whole sequence
            assert np.array_equal(sp.train[u], s)
    sp2 = records_split(ds, sc(sizes=[20, 5, 6], train_sequences="records"))
    for es in (sp2.valid, sp2.test):
        for u, h in zip(es.users, es.histories):
            assert np.array_equal(sp2.train[u], h)
    for u, h, t in zip(sp2.train_records.users, sp2.train_records.histories, sp2.train_records.targets):
        assert np.array_equal(sp2.train[u], np.append(h, t))
    assert sum(len(s) for s in sp2.train) < sum(len(s) for s in sp.train)


def test_candidates_from_training_items_excluding_history_and_seeded():
    ds = toy()
    a = records_split(ds, sc(sizes=[20, 5, 6]))
    b = records_split(ds, sc(sizes=[20, 5, 6]))
    assert np.array_equal(a.test.candidates, b.test.candidates) and np.array_equal(a.valid.users, b.valid.users)
    pool = set(np.concatenate([s for s in a.train if len(s)]).tolist())
    for es, n in ((a.valid, 10), (a.test, 10), (a.train_records, 1)):
        assert es.candidates.shape == (len(es), 1 + n)
        assert (es.candidates[:, 0] == es.targets).all()
        for r in range(len(es)):
            neg = es.candidates[r, 1:].tolist()
            assert len(set(neg)) == n and set(neg) <= pool
            assert not set(neg) & (set(es.histories[r].tolist()) | {int(es.targets[r])})
    c = records_split(ds, sc(sizes=[20, 5, 6], candidates={"n_neg": 10, "seed": 1}))
    assert not np.array_equal(a.test.candidates, c.test.candidates)
    # the test users do not depend on the number of training records
    d = records_split(ds, sc(sizes=[3, 5, 6]))
    assert np.array_equal(a.test.users, d.test.users) and np.array_equal(a.test.candidates, d.test.candidates)


def test_no_exclusion_sampling_is_the_papers_option_and_is_reported():
    ds = toy(n_users=60, n_items=25)  # a small catalogue: negatives often hit the history
    sp = records_split(ds, sc(sizes=[10, 20, 20], neg_exclude=False, candidates={"n_neg": 15, "seed": 0}))
    hits = sp.info["records_rows_with_colliding_negative"]
    assert sp.info["records_neg_exclude"] is False and hits["test"] > 0
    sp2 = records_split(ds, sc(sizes=[10, 20, 20], candidates={"n_neg": 3, "seed": 0}))
    assert sp2.info["records_rows_with_colliding_negative"] == {"valid": 0, "test": 0}


def test_sizes_proportional_or_exact():
    assert fitted_sizes([10000, 1000, 1000], 1200, "proportional") == [1000, 100, 100]
    assert fitted_sizes([100, 10, 10], 500, "exact") == [100, 10, 10]
    with pytest.raises(ValueError, match="eligible"):
        fitted_sizes([10000, 1000, 1000], 1200, "exact")
    ds = toy()
    sp = records_split(ds, sc())  # the paper's 10,000 / 1,000 / 1,000 scaled to the eligible users
    r = sp.info["records"]
    n = sp.info["records_eligible_users"]
    assert r["train"] + r["valid"] + r["test"] <= n and r["valid"] == r["test"] >= 1 and r["train"] >= 8 * r["test"]


def test_require_text_drops_items_without_text():
    items = pl.DataFrame({"item": [str(i) for i in range(1, 81)],
                          "title": [f"title {i}" if i % 4 else None for i in range(1, 81)]})
    ds = toy(items=items)
    sp = records_split(ds, sc(sizes=[10, 3, 3], require_text=True))
    has = {r["item"] for r in ds.item_text.iter_rows(named=True) if r["title"]}
    for es in (sp.train_records, sp.valid, sp.test):
        for h, c in zip(es.histories, es.candidates):
            assert set(h.tolist()) <= has and int(c[0]) in has
    assert all(set(s.tolist()) <= has for s in sp.train)
    assert sp.info["require_text"]["interactions_dropped"] > 0


def test_config_keys_and_random_reference():
    s = split_config(protocol="records")
    assert s.candidates is not None and s.candidates.n_neg == 20  # always 1:N sampled
    assert s.records.sizes == [10000, 1000, 1000] and s.records.min_history == 10 and s.records.max_history == 25
    with pytest.raises(ConfigError, match="records"):
        load_config(None, ["data=toy", "model=pop", "split.protocol=records", "split.records.sizes=[1,0,2]"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["data=toy", "model=pop", "split.records.bogus=1"])
    ref = random_reference(21, (3, 5, 10))  # the spec's numbers for 21 candidates
    assert ref["Recall@3"] == pytest.approx(0.1429, abs=1e-4) and ref["Recall@10"] == pytest.approx(0.4762, abs=1e-4)
    assert ref["MRR@3"] == pytest.approx(0.0873, abs=1e-4) and ref["MRR@10"] == pytest.approx(0.1395, abs=1e-4)


def test_id_baselines_run_on_the_records_protocol(tmp_path):
    """Pop fits on split.train and ranks the same 21 candidates through score_candidates; ties are reported."""
    from llmrec.pipelines.run import run

    ds_dir = tmp_path / "d"
    ds_dir.mkdir()
    rng = np.random.default_rng(0)
    lines = ["user,item,timestamp"]
    for u in range(40):
        for p, it in enumerate(rng.choice(60, size=int(rng.integers(8, 16)), replace=False)):
            lines.append(f"u{u},i{it},{1000 + p}")
    (ds_dir / "inter.csv").write_text("\n".join(lines) + "\n")
    cfg = load_config(None, ["data.name=toyrec", f"data.generic.interactions={ds_dir / 'inter.csv'}",
                             "model=pop", "split.protocol=records", "split.records.sizes=[10,5,8]",
                             "split.records.min_history=6", "split.candidates.n_neg=20", "eval.ks=[3,5,10]",
                             "progress=false"])
    m = run(cfg, tmp_path / "run")
    t = m["metrics"]["test"]
    assert m["protocol"] == "records" and m["eval_protocol"] == "sampled"
    assert 0.0 <= t["MRR@3"] <= t["Recall@3"] <= t["Recall@5"] <= t["Recall@10"] <= 1.0
    assert 0.0 <= t["TieRate"] <= 1.0
    assert m["split_sizes"]["records"] == {"train": 10, "valid": 5, "test": 8}
    assert m["split_sizes"]["records_random_reference"]["Recall@10"] == pytest.approx(10 / 21)


def test_candidate_tie_rate():
    import torch

    from llmrec.evaluation.metrics import candidate_ranks, candidate_ties

    s = torch.tensor([[0.5, 0.1, 0.5, 0.2], [0.9, 0.1, 0.2, 0.3], [0.0, 0.0, 0.0, 0.0]])
    assert candidate_ties(s).tolist() == [1.0, 0.0, 1.0]
    assert candidate_ranks(s).tolist() == [2, 1, 4]  # ties count against the positive
    assert candidate_ties(s, target_pos=1).tolist() == [0.0, 0.0, 1.0]
