"""The session protocol (llmrec.data.sessions): sessions by idle gap, filters, last-session-out split,
unseen-item cleaning, next-item (last / all positions) and next-session tasks."""

import numpy as np
import pytest
import torch

from conftest import make_raw
from llmrec.config import split_config
from llmrec.data.dataset import DataConfig, prepare_raw
from llmrec.data.sessions import session_split
from llmrec.evaluation.evaluator import evaluate
from llmrec.models.base import Recommender

H = 3600  # one hour: always a new session


def ds_from(rows, **kw):
    return prepare_raw(make_raw(rows, **kw), DataConfig(name="toy", id_order="original"))


def sc(**kw):
    return split_config(protocol="session", **kw)


def orig(split, items):
    """Original item ids of renumbered items."""
    return [int(split.dataset.item_ids[i]) for i in items]


# user 1: sessions [1 2] | [3 4] (the gap is exactly 1800 s: same session) | [5 6 7] | test [1 3 9]
# user 2: [1 2 3] | [2 3] | valid [4 5] | test [6 7]; user 3: two sessions only (training-only)
ROWS = [
    (1, 1, 0), (1, 2, 0),  # equal timestamps: same session
    (1, 3, H), (1, 4, H + 1800),  # a gap of exactly 30 minutes: same session
    (1, 5, 3 * H), (1, 6, 3 * H + 10), (1, 7, 3 * H + 20),
    (1, 1, 5 * H), (1, 3, 5 * H + 1), (1, 9, 5 * H + 2),  # item 9 never occurs in training
    (2, 1, 0), (2, 2, 1), (2, 3, 2),
    (2, 2, H), (2, 3, H + 1801),  # 1801 s: a new session
    (2, 4, 3 * H), (2, 5, 3 * H + 1),
    (2, 6, 5 * H), (2, 7, 5 * H + 1),
    (3, 8, 0), (3, 1, 2 * H), (3, 6, 2 * H + 5),
]


def test_gap_rule_and_last_session_out():
    ds = ds_from(ROWS)
    sp = session_split(ds, sc())
    assert sp.protocol == "session-next-item-last"
    u1, u2, u3 = 0, 1, 2
    assert [orig(sp, s) for s in sp.train_sessions[u1]] == [[1, 2], [3, 4]]  # valid = [5 6 7], test = [1 3 9]
    assert [orig(sp, s) for s in sp.train_sessions[u2]] == [[1, 2, 3], [2], [3]]  # valid [4 5] test [6 7]
    assert [orig(sp, s) for s in sp.train_sessions[u3]] == [[8], [1, 6]]  # < 3 sessions: training-only
    for u in range(3):
        assert np.array_equal(sp.train[u], np.concatenate(sp.train_sessions[u]))
    # catalogue = training items only; items 5, 7 and 9 occur only in held-out sessions
    assert sorted(int(i) for i in sp.dataset.item_ids) == [1, 2, 3, 4, 6, 8]
    assert sp.n_items == 6 and sp.n_users == 3
    assert sp.info["users_train_only"] == 1
    # user 1 test session [1 3 9] -> [1 3]; user 2 test [6 7] -> [6] (too short: not evaluated)
    assert sp.info["test_sessions_before_cleaning"] == 2
    assert sp.info["test_interactions_before_cleaning"] == 5
    assert sp.info["test_interactions_unseen_removed"] == 2
    assert sp.info["test_sessions_evaluated"] == 1
    # valid: user 1 [5 6 7] -> [6]; user 2 [4 5] -> [4]: neither has 2 items
    assert sp.info["valid_sessions_evaluated"] == 0 and sp.info["valid_interactions_unseen_removed"] == 3
    assert len(sp.valid) == 0
    assert sp.test.users.tolist() == [u1]
    assert orig(sp, [sp.test.targets[0]]) == [3]
    # the history: training sessions, the cleaned validation session, then the test session's prefix
    assert [orig(sp, s) for s in sp.test.sessions[0]] == [[1, 2], [3, 4], [6], [1]]
    assert np.array_equal(sp.test.histories[0], np.concatenate(sp.test.sessions[0]))


def test_min_eval_length_and_all_positions():
    ds = ds_from(ROWS)
    sp = session_split(ds, sc(session_min_eval_length=1, session_targets="all"))
    assert sp.protocol == "session-next-item-all"
    # every evaluated session contributes its positions 2.. (1-based); length-1 sessions contribute none
    tg = {(int(u), *orig(sp, [t])) for u, t in zip(sp.test.users, sp.test.targets)}
    assert tg == {(0, 3)}
    sp = session_split(ds, sc(session_min_eval_length=1, session_targets="all", session_include_first=True))
    tg = sorted((int(u), *orig(sp, [t])) for u, t in zip(sp.test.users, sp.test.targets))
    assert tg == [(0, 1), (0, 3), (1, 6)]
    for r in range(len(sp.test)):
        ss = sp.test.sessions[r]
        assert np.array_equal(sp.test.histories[r], np.concatenate(ss))
    first = [r for r in range(len(sp.test)) if len(sp.test.sessions[r][-1]) == 0]
    assert len(first) == 2  # predicting a session's first item: the current prefix is empty
    assert sp.info["include_first"] is True


def test_next_session_targets():
    rows = [(1, 1, 0), (1, 2, 1), (1, 3, H), (1, 4, H + 1), (1, 3, 2 * H), (1, 1, 2 * H + 1),
            (1, 1, 3 * H), (1, 2, 3 * H + 1), (1, 2, 3 * H + 2), (1, 3, 3 * H + 3)]
    sp = session_split(ds_from(rows), sc(session_task="next-session"))
    assert sp.protocol == "session-next-session"
    assert sp.test.targets is None
    assert sorted(orig(sp, sp.test.target_sets[0])) == [1, 2, 3]  # distinct items of the held-out session
    assert [orig(sp, s) for s in sp.test.sessions[0]] == [[1, 2], [3, 4], [3, 1], []]
    assert sorted(orig(sp, sp.valid.target_sets[0])) == [1, 3]
    assert [orig(sp, s) for s in sp.valid.sessions[0]] == [[1, 2], [3, 4], []]


def test_filters_in_hrnn_order():
    rows = []
    t = 0
    # user 1: 6 sessions of 3 items; item 99 is rare; user 2: 2 sessions; user 3: 8 sessions
    for u, n_sess in ((1, 6), (2, 2), (3, 8)):
        for s in range(n_sess):
            for k in range(3):
                rows.append((u, 10 + (s + k) % 5, t))
                t += 1
            t += 2 * H
    rows.append((1, 99, t))  # a one-item session with a rare item
    rows.append((3, 10, t + 5 * H))
    rows.append((3, 11, t + 5 * H + 1))  # a 2-item session
    ds = ds_from(rows)
    sp = session_split(ds, sc(session_min_item_count=2, session_min_length=3, session_min_user_sessions=3, session_max_user_sessions=7))
    c = sp.info["counts"]
    assert c["sessionized"]["sessions"] == 6 + 2 + 8 + 1 + 1
    assert c["after_min_item_count"]["interactions"] == len(rows) - 1  # item 99 gone (its session with it)
    assert c["after_min_session_length"]["sessions"] == 16  # the 2-item session gone
    assert c["after_user_sessions"]["users"] == 1  # user 2 (2 sessions) and user 3 (8 sessions) gone
    assert sp.n_users == 1 and [int(x) for x in sp.dataset.user_ids] == [1]
    # dedup inside sessions
    rows2 = [(1, 1, 0), (1, 1, 1), (1, 2, 2), (1, 3, H), (1, 4, 2 * H), (1, 5, 2 * H + 1)]
    sp = session_split(ds_from(rows2), sc(session_dedup=True, session_min_eval_length=1))
    assert [orig(sp, s) for s in sp.train_sessions[0]] == [[1, 2]]
    assert sp.info["counts"]["after_dedup"]["interactions"] == 5


def test_renumbering_keeps_text_and_rejects_candidates():
    ds = ds_from(ROWS)
    sp = session_split(ds, sc())
    text = sp.dataset.item_text
    assert text["item"].to_list() == list(range(sp.n_items))
    assert [t.split()[-1] for t in text["title"].to_list()] == sp.dataset.item_ids
    from llmrec.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="split.candidates: unknown key for split.protocol 'session'"):
        load_config(None, ["data=toy", "model=pop", "split.protocol=session", "split.candidates.n_neg=2"])
    with pytest.raises(ValueError, match="timestamps"):
        session_split(prepare_raw(make_raw(ROWS, has_timestamps=False), DataConfig(name="toy")), sc())


class _Spy(Recommender):
    name = "spy"

    def fit(self, split, **kw):
        self.n_items = split.n_items
        self.seen = []
        return self

    def score(self, batch):
        self.seen.append(batch.sessions)
        return torch.zeros(len(batch), self.n_items)


def test_evaluator_passes_sessions_and_subset_keeps_them():
    sp = session_split(ds_from(ROWS), sc(session_min_eval_length=1, session_targets="all", session_include_first=True))
    m = _Spy().fit(sp)
    evaluate(m, sp.test, ks=[5], progress=False)
    assert m.seen and all(s is not None for s in m.seen)
    sub = sp.test.subset(np.array([1, 0]))
    assert sub.sessions[0] is sp.test.sessions[1]


def _write_log(tmp_path):
    import polars as pl

    rows = []
    rng = np.random.default_rng(0)
    for u in range(12):
        t = 1_600_000_000
        for s in range(5):
            for _ in range(4):
                rows.append({"uid": f"u{u}", "iid": f"i{int(rng.integers(0, 15))}", "ts": t})
                t += 60
            t += 3 * H
    p = tmp_path / "log.csv"
    pl.DataFrame(rows).write_csv(p)
    return p


def test_pipeline_on_a_generic_log(tmp_path):
    """Any user log through the generic loader, next-item and next-session, Pop and ItemKNN."""
    from llmrec.config import load_config
    from llmrec.pipelines.run import run

    p = _write_log(tmp_path)
    base = {"data": {"name": "generic", "generic": {"interactions": str(p), "user_col": "uid", "item_col": "iid", "time_col": "ts"}},
            "split": {"protocol": "session"}, "progress": False, "eval": {"ks": [5]}}
    for task in ("next-item", "next-session"):
        for model in ("pop", "itemknn"):
            cfg = load_config(None, [f"model={model}", f"split.session_task={task}"], base=base)
            m = run(cfg, tmp_path / f"{task}-{model}")
            assert m["protocol"].startswith("session-next")
            assert m["split_sizes"]["test_sessions_before_cleaning"] == 12
            assert 0.0 <= m["metrics"]["test"]["Recall@5"] <= 1.0


def test_taobao_sample_smoke(shared_data):
    from llmrec.data.dataset import load_dataset

    ds = load_dataset("taobao-sample", path=str(shared_data))
    sp = session_split(ds, sc(session_targets="all"))
    assert sp.info["users"] == 43 and len(sp.test) > 0
    assert sp.info["counts"]["sessionized"]["interactions"] == ds.n_interactions


def test_both_tasks_from_one_split_equal_the_separate_splits():
    ds = ds_from(ROWS)
    both = session_split(ds, sc(session_task="both", session_targets="all"))
    item = session_split(ds, sc(session_task="next-item", session_targets="all"))
    sess = session_split(ds, sc(session_task="next-session"))
    assert both.protocol == item.protocol == "session-next-item-all"
    assert list(both.extra_tests) == ["session-next-session"] and both.info["also_tested"] == ["session-next-session"]
    assert np.array_equal(both.test.targets, item.test.targets) and np.array_equal(both.valid.targets, item.valid.targets)
    ns = both.extra_tests["session-next-session"]
    assert np.array_equal(ns.users, sess.test.users)
    assert [t.tolist() for t in ns.target_sets] == [t.tolist() for t in sess.test.target_sets]
    assert [[s.tolist() for s in r] for r in ns.sessions] == [[s.tolist() for s in r] for r in sess.test.sessions]


def test_pipeline_both_writes_the_next_session_result_beside(tmp_path):
    import json

    from llmrec.config import load_config
    from llmrec.pipelines.run import run

    p = _write_log(tmp_path)
    base = {"data": {"name": "generic", "generic": {"interactions": str(p), "user_col": "uid", "item_col": "iid", "time_col": "ts"}},
            "split": {"protocol": "session", "session_task": "both"}, "progress": False, "eval": {"ks": [5]}, "model": "pop"}
    m = run(load_config(None, [], base=base), tmp_path / "both")
    sep = run(load_config(None, ["split.session_task=next-session"], base=base), tmp_path / "sep")
    extra = json.loads((tmp_path / "both" / "session-next-session" / "metrics.json").read_text())
    assert m["protocol"] == "session-next-item-last" and extra["protocol"] == "session-next-session"
    assert "next-item" in extra["selected_on"]
    assert extra["metrics"]["test"] == sep["metrics"]["test"] == m["extra_tests"]["session-next-session"]
