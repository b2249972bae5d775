"""Exact torch top-K and FAISS return the same neighbours; exclusion (history masking) works in both."""

import numpy as np
import pytest
import torch

from llmrec.llm.retrieval import ExactIndex, build_index

faiss = pytest.importorskip("faiss")


def _data(n=500, d=32, b=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(b, d, generator=g)


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_exact_and_faiss_flat_agree(metric):
    items, q = _data()
    ev, ei = build_index(items, "exact", metric).search(q, 10)
    fv, fi = build_index(items, "faiss", metric).search(q, 10)
    assert torch.equal(ei, fi)
    assert torch.allclose(ev, fv, atol=1e-4)
    # and both equal a brute-force reference
    ref = (torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(items, dim=-1).T) if metric == "cosine" else q @ items.T
    assert torch.equal(torch.topk(ref, 10).indices, ei)


def test_exclusion_matches_between_backends():
    items, q = _data()
    rng = np.random.default_rng(1)
    excl = [rng.choice(500, size=rng.integers(0, 30), replace=False) for _ in range(len(q))]
    # exclude each query's true top-3 too, so the filter is exercised
    top = build_index(items, "exact").search(q, 3)[1]
    excl = [np.concatenate([e, top[r].numpy()]) for r, e in enumerate(excl)]
    ev, ei = build_index(items, "exact").search(q, 10, exclude=excl)
    fv, fi = build_index(items, "faiss").search(q, 10, exclude=excl)
    assert torch.equal(ei, fi)
    for r, e in enumerate(excl):
        assert not np.isin(ei[r].numpy(), e).any()
    # a boolean mask works too
    mask = torch.zeros(len(q), 500, dtype=torch.bool)
    for r, e in enumerate(excl):
        mask[r, torch.as_tensor(e)] = True
    assert torch.equal(build_index(items, "exact").search(q, 10, exclude=mask)[1], ei)


def test_approximate_indexes_have_high_recall_and_padding():
    items, q = _data(n=2000, d=16)
    _, exact = build_index(items, "exact").search(q, 10)
    for backend in ("faiss-ivf", "faiss-hnsw"):
        kw = {"nprobe": 64} if backend == "faiss-ivf" else {}
        _, approx = build_index(items, backend, **kw).search(q, 10)
        recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(approx, exact)])
        assert recall > 0.9, (backend, recall)
    small = ExactIndex(items[:5])
    v, i = small.search(q[:2], 8, exclude=[[0], []])
    assert i.shape == (2, 8) and (i[0] == -1).sum() == 4 and (i[1] == -1).sum() == 3
    assert torch.isinf(v[0, -1])
    with pytest.raises(ValueError):
        build_index(items, "annoy")
