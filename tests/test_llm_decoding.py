"""Constrained decoding (llmrec.llm.decoding), the data fingerprint, ranked-list scores and the eval sample."""

import numpy as np
import pytest
import torch

from llmrec.llm.decoding import ListConstraint, Trie, TrieConstraint, prefix_allowed_tokens_fn


def test_trie_next_tokens_and_lookup():
    t = Trie([[1, 2, 3], [1, 2, 4], [5]], items=[10, 11, 12])
    assert sorted(t.next_tokens([])) == [1, 5]
    assert sorted(t.next_tokens([1, 2])) == [3, 4]
    assert t.next_tokens([2]) == []
    assert t.lookup([1, 2, 4]) == 11 and t.lookup([1, 2]) is None and t.lookup([5]) == 12
    with pytest.raises(ValueError, match="same token sequence"):
        Trie([[1], [1]], items=[0, 1])


def _random_walk(c, rng, limit=200):
    out = []
    for _ in range(limit):
        allowed = c.allowed(out)
        if not allowed:
            return out
        out.append(int(rng.choice(allowed)))
    raise AssertionError("constraint never completes")


def test_list_constraint_only_candidates_none_twice():
    rng = np.random.default_rng(0)
    # candidates share prefixes; sep = 9, end = 0
    seqs = [[1, 2], [1, 3], [1, 3, 4], [5], [6, 7, 8]]
    items = [100, 101, 102, 103, 104]
    for trial in range(50):
        c = ListConstraint(seqs, items, sep=[9], end=[0], max_items=3)
        toks = _random_walk(c, rng)
        got = c.parse(toks)
        assert len(got) == 3 and len(set(got)) == 3 and set(got) <= set(items)
        assert toks[-1] == 0
    # asking for more items than candidates: every candidate once, then the end
    c = ListConstraint(seqs, items, sep=[9], end=[0], max_items=10)
    got = c.parse(_random_walk(c, rng))
    assert sorted(got) == items


def test_trie_constraint_for_beams_and_hf_adapter():
    trie = Trie([[3, 4], [3, 5], [6]], items=[0, 1, 2])
    c = TrieConstraint(trie, end=[2])
    assert sorted(c.allowed([])) == [3, 6]
    assert c.allowed([6]) == [2]
    assert c.allowed([3, 4]) == [2] and c.allowed([3, 4, 2]) == []
    assert c.allowed([7]) == []
    fn = prefix_allowed_tokens_fn([c], prompt_len=1, fallback=[1])
    assert sorted(fn(0, torch.tensor([0, 3]))) == [4, 5]
    assert fn(0, torch.tensor([0, 6, 2])) == [1]  # complete: only the fallback (pad)


def test_scores_from_lists_pessimistic():
    from llmrec.evaluation.evaluator import scores_from_lists
    from llmrec.evaluation.metrics import pessimistic_rank

    s = scores_from_lists([[3, 1], []], n_items=5)
    assert s[0, 3] > s[0, 1] > s[0, 0] == float("-inf")
    ranks = pessimistic_rank(s, torch.tensor([1, 2]), None)
    assert int(ranks[0]) == 2  # second in the list (1-based)
    assert int(ranks[1]) == 5  # unlisted target: after every other item


def test_data_fingerprint_mismatch_names_fields(tmp_path):
    from llmrec.data.dataset import DataConfig, prepare_raw
    from llmrec.data.fingerprint import FingerprintMismatch, check_same_data, data_fingerprint
    from conftest import make_raw

    rows = [(u, i, t) for u in range(6) for t, i in enumerate(range(u, u + 5))]
    raw = make_raw(rows)
    a = prepare_raw(raw, DataConfig(name="toy", id_order="random", id_seed=1))
    b = prepare_raw(raw, DataConfig(name="toy", id_order="random", id_seed=2))
    fa = data_fingerprint(a, DataConfig(name="toy", id_seed=1), "loo")
    assert fa == data_fingerprint(a, DataConfig(name="toy", id_seed=1), "loo")
    check_same_data(fa, dict(fa), "retriever")
    fb = data_fingerprint(b, DataConfig(name="toy", id_seed=2), "loo")
    with pytest.raises(FingerprintMismatch, match="id_seed"):
        check_same_data(fa, fb, "retriever")
    with pytest.raises(FingerprintMismatch, match="no data fingerprint"):
        check_same_data(fa, None, "retriever")


def test_eval_sample_same_users_for_valid_and_test():
    from llmrec.data.dataset import DataConfig, prepare_raw
    from llmrec.data.splits import leave_one_out
    from llmrec.pipelines.run import sample_eval_users
    from conftest import make_raw

    rows = [(u, i, t) for u in range(40) for t, i in enumerate(range(u, u + 5))]
    ds = prepare_raw(make_raw(rows), DataConfig(name="toy"))
    s1, s2 = leave_one_out(ds), leave_one_out(ds)
    chosen = sample_eval_users(s1, 10, seed=3)
    sample_eval_users(s2, 10, seed=3)
    assert len(chosen) == 10
    assert np.array_equal(s1.valid.users, chosen) and np.array_equal(s1.test.users, chosen)
    assert np.array_equal(s1.test.users, s2.test.users)
    assert all(np.array_equal(a, b) for a, b in zip(s1.test.histories, s2.test.histories))
