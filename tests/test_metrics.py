"""Tests for llmrec.evaluation.metrics.

Hand-computed expectations are spelled out in comments; the property tests
compare against a brute-force pure-Python reference that sorts each row with
the explicit pessimistic tie order (score desc, then non-targets before
targets; excluded non-target items dropped).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.evaluation.metrics import (
    METRIC_NAMES,
    MetricAccumulator,
    candidate_ranks,
    multi_target_metrics,
    pessimistic_rank,
    pessimistic_rank_excluding,
    single_target_metrics,
)

INF = float("inf")


# ---------------------------------------------------------------------------
# brute-force reference (pure Python, one row at a time)
# ---------------------------------------------------------------------------


def ref_order(scores: list[float], targets: set[int], excluded: list[bool]) -> list[int]:
    """Item ids in pessimistic ranking order."""
    items = [j for j in range(len(scores)) if j in targets or not excluded[j]]
    # Python's sort is stable; the key puts non-targets (False) before targets
    # (True) among equal scores.
    return sorted(items, key=lambda j: (-scores[j], j in targets))


def ref_metrics(order: list[int], targets: set[int], k: int) -> dict[str, float]:
    positions = [p + 1 for p, j in enumerate(order) if j in targets]
    in_k = [p for p in positions if p <= k]
    dcg = sum(1.0 / math.log2(p + 1) for p in in_k)
    idcg = sum(1.0 / math.log2(p + 1) for p in range(1, min(len(targets), k) + 1))
    return {
        f"HR@{k}": 1.0 if in_k else 0.0,
        f"NDCG@{k}": dcg / idcg,
        f"MRR@{k}": 1.0 / positions[0] if positions[0] <= k else 0.0,
        f"Precision@{k}": len(in_k) / k,
        f"Recall@{k}": len(in_k) / len(targets),
    }


def ref_rank_by_definition(scores: list[float], t: int, excluded: list[bool]) -> int:
    """1 + number of OTHER non-excluded items scoring >= the target."""
    return 1 + sum(1 for j, s in enumerate(scores) if j != t and not excluded[j] and s >= scores[t])


def assert_metrics_close(got: dict[str, torch.Tensor], want: list[dict[str, float]]) -> None:
    for row, expected in enumerate(want):
        for name, value in expected.items():
            assert got[name].dtype == torch.float64
            assert got[name][row].item() == pytest.approx(value, rel=1e-12, abs=1e-15), (name, row)


# ---------------------------------------------------------------------------
# hand-computed single-target cases
# ---------------------------------------------------------------------------


def test_hand_example_single_target():
    # scores [0.9, 0.5, 0.7, 0.1], target column 2 (score 0.7):
    # only item 0 (0.9) scores >= 0.7 -> rank 2.
    scores = torch.tensor([[0.9, 0.5, 0.7, 0.1]])
    ranks = pessimistic_rank(scores, torch.tensor([2]))
    assert ranks.dtype == torch.long
    assert ranks.tolist() == [2]

    m = single_target_metrics(ranks, [1, 5])
    assert set(m) == {f"{n}@{k}" for n in METRIC_NAMES for k in (1, 5)}
    # rank 2 > 1: everything @1 is zero
    for n in METRIC_NAMES:
        assert m[f"{n}@1"].item() == 0.0
    assert m["HR@5"].item() == 1.0
    assert m["Recall@5"].item() == 1.0
    assert m["NDCG@5"].item() == pytest.approx(1 / math.log2(3))  # 0.6309...
    assert m["MRR@5"].item() == 0.5  # 1 / rank
    assert m["Precision@5"].item() == pytest.approx(0.2)  # HR / k = 1/5
    assert all(v.dtype == torch.float64 and v.shape == (1,) for v in m.values())


def test_hand_example_rank_one_and_cutoff_boundary():
    # target is the strict maximum -> rank 1: HR@1 = NDCG@1 = MRR@1 = 1, Precision@1 = 1.
    m = single_target_metrics(pessimistic_rank(torch.tensor([[0.1, 3.0, 2.0]]), torch.tensor([1])), [1, 3])
    assert m["HR@1"].item() == m["NDCG@1"].item() == m["MRR@1"].item() == m["Precision@1"].item() == 1.0
    assert m["Precision@3"].item() == pytest.approx(1 / 3)
    # rank exactly k counts as a hit: rank 3 with k=3 -> NDCG = 1/log2(4) = 0.5, MRR = 1/3
    m = single_target_metrics(torch.tensor([3, 4]), [3])
    assert m["HR@3"].tolist() == [1.0, 0.0]
    assert m["NDCG@3"].tolist() == [0.5, 0.0]
    assert m["MRR@3"][0].item() == pytest.approx(1 / 3)
    assert m["MRR@3"][1].item() == 0.0


def test_ties_are_pessimistic():
    # target (col 0, score 0.5) tied with cols 2 and 3; col 1 is lower -> rank 3.
    scores = torch.tensor([[0.5, 0.1, 0.5, 0.5]])
    assert pessimistic_rank(scores, torch.tensor([0])).tolist() == [3]
    # one higher item plus two ties -> rank 4
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5]])
    assert pessimistic_rank(scores, torch.tensor([3])).tolist() == [4]


def test_constant_score_model_gets_worst_rank():
    # a model that scores all 1,000 items the same must rank every target last
    B, N = 7, 1000
    scores = torch.full((B, N), 0.25)
    targets = torch.tensor([0, 1, 17, 500, 998, 999, 3])
    ranks = pessimistic_rank(scores, targets)
    assert ranks.tolist() == [1000] * B
    m = single_target_metrics(ranks, [10, 1000])
    assert torch.all(m["HR@10"] == 0)
    assert torch.all(m["NDCG@10"] == 0)
    assert torch.all(m["HR@1000"] == 1)
    # multi-target version of the same model: targets placed after all 1000 - T non-targets
    tmask = torch.zeros(B, N, dtype=torch.bool)
    tmask[torch.arange(B), targets] = True
    tmask[:, 100] = True  # second target in every row (row 3 included)
    mm = multi_target_metrics(scores, tmask, None, [10, 998, 999])
    for n in METRIC_NAMES:
        assert torch.all(mm[f"{n}@10"] == 0), n
        assert torch.all(mm[f"{n}@998"] == 0), n
    # position 999 is the first target: Recall@999 = 1/2, MRR@999 = 1/999
    assert torch.allclose(mm["Recall@999"], torch.full((B,), 0.5, dtype=torch.float64))
    assert torch.allclose(mm["MRR@999"], torch.full((B,), 1 / 999, dtype=torch.float64))


def test_exclusion():
    scores = torch.tensor(
        [
            [0.9, 0.8, 0.7, 0.1],  # target 2; items 0 and 1 are above it
            [0.9, 0.8, 0.7, 0.1],
            [0.9, 0.8, 0.7, 0.1],
        ]
    )
    exclude = torch.tensor(
        [
            [True, False, False, False],  # item 0 removed -> only item 1 above -> rank 2
            [True, True, True, False],  # target flagged too: never excluded -> rank 1
            [False, False, False, True],  # excluding a lower item changes nothing -> rank 3
        ]
    )
    targets = torch.tensor([2, 2, 2])
    assert pessimistic_rank(scores, targets, exclude).tolist() == [2, 1, 3]
    assert pessimistic_rank(scores, targets).tolist() == [3, 3, 3]


def test_minus_inf_target_ranks_last():
    # target at -inf ties with (hence ranks below) every non-excluded item,
    # including other -inf items; excluded items still do not count.
    scores = torch.tensor(
        [
            [-INF, 0.0, -5.0, -INF],
            [-INF, 0.0, -5.0, -INF],
        ]
    )
    exclude = torch.tensor([[False, False, False, False], [False, True, False, False]])
    assert pessimistic_rank(scores, torch.tensor([0, 0]), exclude).tolist() == [4, 3]
    # +inf target tied with another +inf item -> rank 2
    scores = torch.tensor([[INF, 1.0, INF]])
    assert pessimistic_rank(scores, torch.tensor([0])).tolist() == [2]


def test_nan_raises():
    scores = torch.tensor([[0.3, float("nan"), 0.1]])
    with pytest.raises(ValueError, match="NaN"):
        pessimistic_rank(scores, torch.tensor([0]))
    with pytest.raises(ValueError, match="NaN"):
        pessimistic_rank(scores, torch.tensor([1]))  # NaN target
    with pytest.raises(ValueError, match="NaN"):
        candidate_ranks(scores)
    with pytest.raises(ValueError, match="NaN"):
        multi_target_metrics(scores, torch.tensor([[True, False, False]]), None, [2])
    with pytest.raises(ValueError, match="NaN"):
        # NaN in a target column is ranked even if `exclude` flags it
        multi_target_metrics(
            scores, torch.tensor([[False, True, False]]), torch.tensor([[False, True, False]]), [2]
        )
    with pytest.raises(ValueError, match="NaN"):
        pessimistic_rank(scores, torch.tensor([1]), torch.tensor([[False, True, False]]))
    # a NaN in an excluded non-target position is never ranked, so it is allowed
    ex = torch.tensor([[False, True, False]])
    assert pessimistic_rank(scores, torch.tensor([2]), ex).tolist() == [2]
    m = multi_target_metrics(scores, torch.tensor([[False, False, True]]), ex, [1])
    assert m["HR@1"].item() == 0.0


def test_input_validation():
    scores = torch.rand(2, 4)
    with pytest.raises(ValueError):
        pessimistic_rank(scores, torch.tensor([0, 4]))  # out of range
    with pytest.raises(ValueError):
        pessimistic_rank(scores, torch.tensor([-1, 0]))
    with pytest.raises(ValueError):
        pessimistic_rank(scores, torch.tensor([0]))  # wrong batch size
    with pytest.raises(ValueError):
        pessimistic_rank(scores[0], torch.tensor([0]))  # 1-D scores
    with pytest.raises(TypeError):
        pessimistic_rank(scores, torch.tensor([0, 1]), torch.zeros(2, 4))  # float mask
    with pytest.raises(ValueError):
        single_target_metrics(torch.tensor([0, 1]), [1])  # rank 0
    with pytest.raises(ValueError):
        single_target_metrics(torch.tensor([1]), [0])
    with pytest.raises(ValueError):
        single_target_metrics(torch.tensor([1]), [])
    with pytest.raises(ValueError, match="at least one target"):
        multi_target_metrics(scores, torch.tensor([[True, False, False, False], [False] * 4]), None, [1])


# ---------------------------------------------------------------------------
# multi-target
# ---------------------------------------------------------------------------


def test_multi_target_hand_example_with_ties():
    scores = torch.tensor(
        [
            [0.8, 0.5, 0.5, 0.3, 0.5, 0.9],
            [1.0, 1.0, -INF, -INF, 0.0, 2.0],
        ]
    )
    targets = torch.tensor(
        [
            [False, True, False, True, False, False],  # targets {1, 3}
            [True, False, True, False, False, False],  # targets {0, 2}
        ]
    )
    exclude = torch.tensor(
        [
            [False, False, False, False, False, True],  # 0.9 item removed
            [True, False, False, False, False, True],  # target 0 flagged: ignored; item 5 removed
        ]
    )
    m = multi_target_metrics(scores, targets, exclude, [1, 3, 4, 5, 10])

    # Row 0 order: 0 (0.8), 2 (0.5), 4 (0.5), 1 (0.5, target after equal non-targets),
    #              3 (0.3, target).  Target positions: 4 and 5.
    # Row 1 order: 1 (1.0), 0 (1.0, target), 4 (0.0), 3 (-inf), 2 (-inf, target).
    #              Target positions: 2 and 5.
    l2 = math.log2
    idcg2 = 1 + 1 / l2(3)  # two targets, k >= 2
    expected = [
        {
            # @1 and @3: no target in the top 3
            "HR@1": 0, "NDCG@1": 0, "MRR@1": 0, "Precision@1": 0, "Recall@1": 0,
            "HR@3": 0, "NDCG@3": 0, "MRR@3": 0, "Precision@3": 0, "Recall@3": 0,
            # @4: one hit at position 4
            "HR@4": 1, "NDCG@4": (1 / l2(5)) / idcg2, "MRR@4": 1 / 4,
            "Precision@4": 1 / 4, "Recall@4": 1 / 2,
            # @5: hits at 4 and 5
            "HR@5": 1, "NDCG@5": (1 / l2(5) + 1 / l2(6)) / idcg2, "MRR@5": 1 / 4,
            "Precision@5": 2 / 5, "Recall@5": 1,
            # @10: only 5 rankable items, precision still divides by k
            "HR@10": 1, "NDCG@10": (1 / l2(5) + 1 / l2(6)) / idcg2, "MRR@10": 1 / 4,
            "Precision@10": 2 / 10, "Recall@10": 1,
        },
        {
            "HR@1": 0, "NDCG@1": 0, "MRR@1": 0, "Precision@1": 0, "Recall@1": 0,
            # @3: hit at position 2; IDCG@3 covers min(2, 3) = 2 positions
            "HR@3": 1, "NDCG@3": (1 / l2(3)) / idcg2, "MRR@3": 1 / 2,
            "Precision@3": 1 / 3, "Recall@3": 1 / 2,
            "HR@4": 1, "NDCG@4": (1 / l2(3)) / idcg2, "MRR@4": 1 / 2,
            "Precision@4": 1 / 4, "Recall@4": 1 / 2,
            "HR@5": 1, "NDCG@5": (1 / l2(3) + 1 / l2(6)) / idcg2, "MRR@5": 1 / 2,
            "Precision@5": 2 / 5, "Recall@5": 1,
            "HR@10": 1, "NDCG@10": (1 / l2(3) + 1 / l2(6)) / idcg2, "MRR@10": 1 / 2,
            "Precision@10": 2 / 10, "Recall@10": 1,
        },
    ]
    assert set(m) == set(expected[0])
    assert_metrics_close(m, expected)
    # the brute-force reference agrees with the hand calculation
    for row in range(2):
        order = ref_order(scores[row].tolist(), set(torch.nonzero(targets[row]).flatten().tolist()),
                          exclude[row].tolist())
        assert order == [[0, 2, 4, 1, 3], [1, 0, 4, 3, 2]][row]


def test_multi_target_perfect_ranking():
    # all T targets on top: every metric is maximal; Precision@k = min(T, k) / k
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    targets = torch.tensor([[True, True, True, False, False]])
    m = multi_target_metrics(scores, targets, None, [2, 5])
    assert m["NDCG@2"].item() == pytest.approx(1.0)
    assert m["NDCG@5"].item() == pytest.approx(1.0)
    assert m["Recall@2"].item() == pytest.approx(2 / 3)
    assert m["Precision@2"].item() == 1.0
    assert m["Precision@5"].item() == pytest.approx(3 / 5)
    assert m["MRR@2"].item() == 1.0


def test_multi_agrees_with_single_on_one_target_rows_large():
    # exercises the top-k + tie-block path on a larger batch with many ties
    g = torch.Generator().manual_seed(0)
    B, N = 64, 3000
    scores = torch.randint(0, 40, (B, N), generator=g).float()
    scores[:4] = 0.0  # constant rows
    targets = torch.randint(0, N, (B,), generator=g)
    exclude = torch.rand(B, N, generator=g) < 0.2
    ks = [1, 5, 10, 20, 100, 2999, 5000]
    single = single_target_metrics(pessimistic_rank(scores, targets, exclude), ks)
    onehot = torch.zeros(B, N, dtype=torch.bool)
    onehot[torch.arange(B), targets] = True
    multi = multi_target_metrics(scores, onehot, exclude, ks)
    assert set(single) == set(multi)
    for name in single:
        torch.testing.assert_close(multi[name], single[name], rtol=1e-12, atol=0, msg=name)


def _fullsort_multi_reference(scores, targets, exclude, ks):
    """Independent vectorised reference: a full lexicographic stable sort."""
    B, N = scores.shape
    cls = targets.long() + 2 * (exclude & ~targets).long()  # 0 non-target, 1 target, 2 excluded
    # excluded items go last: primary key excluded flag, then score desc, then class
    perm = torch.sort(cls, dim=1, stable=True).indices
    s = scores.gather(1, perm)
    perm = perm.gather(1, torch.sort(s, dim=1, descending=True, stable=True).indices)
    perm = perm.gather(1, torch.sort((cls == 2).long().gather(1, perm), dim=1, stable=True).indices)
    hits = targets.gather(1, perm).double()
    T = targets.sum(1).double()
    disc = 1.0 / torch.log2(torch.arange(2, N + 2, dtype=torch.float64))
    out = {}
    for k in ks:
        kk = min(k, N)
        h = hits[:, :kk].sum(1)
        ideal = torch.stack([disc[: int(min(t, kk))].sum() for t in T.tolist()])
        first = torch.where(hits.any(1), hits.argmax(1) + 1, torch.full((B,), N + 1))
        out[f"HR@{k}"] = (h > 0).double()
        out[f"NDCG@{k}"] = (hits[:, :kk] * disc[:kk]).sum(1) / ideal
        out[f"MRR@{k}"] = torch.where(first <= kk, 1.0 / first.double(), torch.zeros((), dtype=torch.float64))
        out[f"Precision@{k}"] = h / k
        out[f"Recall@{k}"] = h / T
    return out


def test_multi_matches_full_sort_reference_large():
    g = torch.Generator().manual_seed(1)
    B, N = 48, 2000
    scores = torch.randint(-5, 6, (B, N), generator=g).float()
    scores[scores == -5] = -INF
    targets = torch.rand(B, N, generator=g) < 0.01
    targets[:, 7] = True
    exclude = torch.rand(B, N, generator=g) < 0.3
    ks = [1, 3, 10, 50, 200, 1999, 2000, 4000]
    got = multi_target_metrics(scores, targets, exclude, ks)
    want = _fullsort_multi_reference(scores, targets, exclude, ks)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-15, msg=name)


# ---------------------------------------------------------------------------
# property tests against the brute-force reference
# ---------------------------------------------------------------------------

SCORE_VALUES = st.sampled_from([-INF, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
KS = st.lists(st.sampled_from([1, 2, 3, 5, 8, 20]), min_size=1, max_size=4, unique=True)


@st.composite
def ranking_problems(draw, dtype_choices=(torch.float32, torch.float64)):
    B = draw(st.integers(1, 5))
    N = draw(st.integers(1, 10))
    scores = [[draw(SCORE_VALUES) for _ in range(N)] for _ in range(B)]
    exclude = [[draw(st.booleans()) for _ in range(N)] for _ in range(B)]
    single = [draw(st.integers(0, N - 1)) for _ in range(B)]
    multi = []
    for b in range(B):
        row = {j for j in range(N) if draw(st.integers(0, 2)) == 0}
        row.add(single[b])  # at least one target per row
        multi.append(row)
    dtype = draw(st.sampled_from(dtype_choices))
    ks = draw(KS)
    return scores, exclude, single, multi, dtype, ks


@settings(max_examples=300, deadline=None)
@given(ranking_problems())
def test_property_single_target_matches_bruteforce(problem):
    scores, exclude, single, _, dtype, ks = problem
    S = torch.tensor(scores, dtype=dtype)
    E = torch.tensor(exclude, dtype=torch.bool)
    ranks = pessimistic_rank(S, torch.tensor(single), E)
    # the same ranks from item lists (duplicates, the target itself listed) instead of a (B, N) mask
    lists = [[j for j, x in enumerate(row) if x] * 2 for row in exclude]
    assert pessimistic_rank_excluding(S, torch.tensor(single), lists).tolist() == ranks.tolist()
    want_metrics = []
    for b, t in enumerate(single):
        order = ref_order(scores[b], {t}, exclude[b])
        want_rank = order.index(t) + 1
        assert ranks[b].item() == want_rank
        assert ranks[b].item() == ref_rank_by_definition(scores[b], t, exclude[b])
        row = {}
        for k in ks:
            row.update(ref_metrics(order, {t}, k))
        want_metrics.append(row)
    got = single_target_metrics(ranks, ks)
    assert set(got) == set(want_metrics[0])
    assert_metrics_close(got, want_metrics)

    # single target through the multi-target path gives identical values
    onehot = torch.zeros(S.shape, dtype=torch.bool)
    onehot[torch.arange(len(single)), torch.tensor(single)] = True
    multi = multi_target_metrics(S, onehot, E, ks)
    for name in got:
        torch.testing.assert_close(multi[name], got[name], rtol=1e-12, atol=0, msg=name)


@settings(max_examples=300, deadline=None)
@given(ranking_problems())
def test_property_multi_target_matches_bruteforce(problem):
    scores, exclude, _, multi, dtype, ks = problem
    S = torch.tensor(scores, dtype=dtype)
    E = torch.tensor(exclude, dtype=torch.bool)
    N = S.shape[1]
    T = torch.tensor([[j in row for j in range(N)] for row in multi], dtype=torch.bool)
    got = multi_target_metrics(S, T, E, ks)
    want = []
    for b, tset in enumerate(multi):
        order = ref_order(scores[b], tset, exclude[b])
        row = {}
        for k in ks:
            row.update(ref_metrics(order, tset, k))
        want.append(row)
    assert set(got) == set(want[0])
    assert_metrics_close(got, want)
    # exclude=None behaves like an all-False mask
    got_none = multi_target_metrics(S, T, None, ks)
    got_false = multi_target_metrics(S, T, torch.zeros_like(E), ks)
    for name in got_none:
        assert torch.equal(got_none[name], got_false[name])


@settings(max_examples=100, deadline=None)
@given(ranking_problems(), st.data())
def test_property_nan_in_ranked_item_raises(problem, data):
    scores, exclude, single, multi, dtype, ks = problem
    B, N = len(scores), len(scores[0])
    b = data.draw(st.integers(0, B - 1))
    j = data.draw(st.integers(0, N - 1))
    scores[b][j] = float("nan")
    exclude[b][j] = False
    S = torch.tensor(scores, dtype=dtype)
    E = torch.tensor(exclude, dtype=torch.bool)
    with pytest.raises(ValueError, match="NaN"):
        pessimistic_rank(S, torch.tensor(single), E)
    T = torch.tensor([[c in row for c in range(N)] for row in multi], dtype=torch.bool)
    with pytest.raises(ValueError, match="NaN"):
        multi_target_metrics(S, T, E, ks)


# ---------------------------------------------------------------------------
# candidate ranking
# ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(ranking_problems())
def test_property_candidate_ranks_agree_with_pessimistic_rank(problem):
    scores, _, single, _, dtype, _ = problem
    S = torch.tensor(scores, dtype=dtype)
    B = S.shape[0]
    # default positive in column 0
    assert torch.equal(candidate_ranks(S), pessimistic_rank(S, torch.zeros(B, dtype=torch.long)))
    # per-row positive column
    pos = torch.tensor(single)
    assert torch.equal(candidate_ranks(S, pos), pessimistic_rank(S, pos))
    # scalar int position
    last = S.shape[1] - 1
    assert torch.equal(candidate_ranks(S, last), pessimistic_rank(S, torch.full((B,), last)))


def test_candidate_ranks_hand_example():
    # 1 positive (col 0) + 4 sampled negatives; two negatives tie with the positive
    cand = torch.tensor([[0.4, 0.4, 0.9, 0.4, 0.1], [0.9, 0.1, 0.2, 0.3, 0.4]])
    assert candidate_ranks(cand).tolist() == [4, 1]  # row 0: 0.9, 0.4, 0.4 ahead


# ---------------------------------------------------------------------------
# accumulation
# ---------------------------------------------------------------------------


def test_accumulator_means_over_batches_equal_mean_over_concatenation():
    g = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 10, (37, 50), generator=g).float()
    targets = torch.randint(0, 50, (37,), generator=g)
    ks = [1, 5, 10]
    full = single_target_metrics(pessimistic_rank(scores, targets), ks)

    acc = MetricAccumulator(keep_rows=True)
    for lo, hi in [(0, 16), (16, 37)]:  # two batches of unequal size
        acc.add(single_target_metrics(pessimistic_rank(scores[lo:hi], targets[lo:hi]), ks))
    assert acc.count == 37
    res = acc.result()
    assert set(res) == set(full)
    for name, values in full.items():
        assert isinstance(res[name], float)
        assert res[name] == pytest.approx(values.mean().item(), rel=1e-12)
        assert torch.equal(acc.rows(name), values)
    assert set(acc.rows()) == set(full)

    acc.reset()
    assert acc.count == 0 and acc.result() == {}


def test_accumulator_validation():
    acc = MetricAccumulator()
    with pytest.raises(ValueError):
        acc.add({"HR@1": torch.ones(3), "NDCG@1": torch.ones(2)})
    acc.add({"HR@1": torch.tensor([1.0, 0.0])})
    assert acc.result() == {"HR@1": 0.5}
    with pytest.raises(RuntimeError):
        acc.rows("HR@1")  # keep_rows=False


def test_rank_excluding_lists_nan_and_errors():
    nan = float("nan")
    S = torch.tensor([[0.5, nan, 0.9, 0.1], [0.3, 0.3, -INF, 0.2]])
    t = torch.tensor([0, 3])
    # NaN in an excluded item is fine (dense fallback); ties and -inf as in pessimistic_rank
    assert pessimistic_rank_excluding(S, t, [[1], [2]]).tolist() == [2, 3]
    assert pessimistic_rank_excluding(S, t, [[1, 2], [0, 1, 3]]).tolist() == [1, 1]
    with pytest.raises(ValueError, match="NaN scores in ranked items"):
        pessimistic_rank_excluding(S, t, [[], []])
    with pytest.raises(ValueError, match="lie in"):
        pessimistic_rank_excluding(S, t, [[4], []])
    with pytest.raises(ValueError, match="one item list per row"):
        pessimistic_rank_excluding(S, t, [[1]])
    with pytest.raises(ValueError, match="target indices"):
        pessimistic_rank_excluding(S, torch.tensor([0, 4]), [[1], [2]])
    E = torch.zeros(0, 5)
    assert pessimistic_rank_excluding(E, torch.zeros(0, dtype=torch.long), []).tolist() == []


def test_evaluator_memory_is_bounded_by_max_elements():
    """Full ranking scores at most ``max_elements`` users x items per batch, whatever the catalogue, and the
    metrics do not depend on the batching."""
    import numpy as np

    from llmrec.data.splits import EvalSet
    from llmrec.evaluation.evaluator import evaluate

    n, N = 300, 5000
    table = torch.rand((n, N), generator=torch.Generator().manual_seed(0)).round(decimals=2)  # with ties

    class Rec:
        name, n_items = "rec", N
        shapes: list = []

        def score(self, batch):
            self.shapes.append(len(batch))
            return table[torch.from_numpy(batch.users)]

    rng = np.random.default_rng(0)
    hist = [rng.choice(N, size=rng.integers(1, 30), replace=True) for _ in range(n)]
    es = EvalSet(name="test", users=np.arange(n), histories=hist, targets=rng.integers(0, N, n))
    m, runs = Rec(), {}
    for bound in (64 * N, 7 * N + 1, None):
        m.shapes = []
        runs[bound] = evaluate(m, es, batch_size=512, max_elements=bound, progress=False)["metrics"]
        assert max(m.shapes) == (64 if bound == 64 * N else 7 if bound else n) and sum(m.shapes) == n
    for k, v in runs[None].items():
        assert runs[64 * N][k] == pytest.approx(v, rel=1e-12) and runs[7 * N + 1][k] == pytest.approx(v, rel=1e-12)
