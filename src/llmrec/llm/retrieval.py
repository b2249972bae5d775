"""Nearest-neighbour retrieval: user embeddings against every item embedding.

Two backends with one interface, ``index.search(queries, k, exclude=None) -> (scores, ids)``:

- :class:`ExactIndex` — torch matrix product + ``topk`` in query chunks (on the items' device). Exact; the
  right choice up to a few hundred thousand items, and on a GPU well beyond.
- :class:`FaissIndex` — a FAISS index (``faiss-cpu``): ``flat`` (exact inner product), ``ivf`` (inverted
  lists, ``nlist`` cells, ``nprobe`` searched) or ``hnsw`` (graph, ``M`` links) for large catalogues.

``metric="cosine"`` L2-normalises items and queries, so the inner product is the cosine. ``exclude`` (one
array of item ids per query, e.g. the user's history) removes items from the result: the exact backend masks
them before ``topk``; FAISS fetches ``k + len(exclude)`` neighbours and filters, which is still exact for
``flat``. Rows with fewer than ``k`` eligible items are padded with id ``-1`` and score ``-inf``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

METRICS = ("cosine", "dot")


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _exclude_lists(exclude, B: int) -> list[np.ndarray] | None:
    if exclude is None:
        return None
    if isinstance(exclude, torch.Tensor) and exclude.dtype == torch.bool:
        return [torch.nonzero(r).flatten().numpy() for r in exclude.cpu()]
    out = [np.asarray(e, dtype=np.int64).ravel() for e in exclude]
    if len(out) != B:
        raise ValueError(f"exclude has {len(out)} rows for {B} queries")
    return out


class ExactIndex:
    """Exact top-K by a (chunked) matrix product in torch."""

    backend = "exact"

    def __init__(self, items, metric: str = "cosine", device: str | torch.device | None = None, query_chunk: int = 1024):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r} ({', '.join(METRICS)})")
        it = _as_tensor(items).float()
        if device is not None:
            it = it.to(device)
        self.metric = metric
        self.items = F.normalize(it, dim=-1) if metric == "cosine" else it
        self.query_chunk = query_chunk

    @property
    def n_items(self) -> int:
        return int(self.items.shape[0])

    def scores(self, queries) -> torch.Tensor:
        """(B, n_items) similarity of every query with every item."""
        q = _as_tensor(queries).float().to(self.items.device)
        if self.metric == "cosine":
            q = F.normalize(q, dim=-1)
        return q @ self.items.T

    @torch.no_grad()
    def search(self, queries, k: int, exclude=None) -> tuple[torch.Tensor, torch.Tensor]:
        q = _as_tensor(queries)
        B = q.shape[0]
        excl = _exclude_lists(exclude, B)
        kk = min(k, self.n_items)
        vals, ids = [], []
        for s in range(0, B, self.query_chunk):
            sc = self.scores(q[s: s + self.query_chunk])
            if excl is not None:
                for r in range(sc.shape[0]):
                    e = excl[s + r]
                    if len(e):
                        sc[r, torch.as_tensor(e, device=sc.device)] = float("-inf")
            v, i = torch.topk(sc, kk, dim=1)
            i = i.masked_fill(torch.isinf(v) & (v < 0), -1)
            vals.append(v.cpu())
            ids.append(i.cpu())
        v, i = torch.cat(vals), torch.cat(ids)
        return _pad_k(v, i, k)


def _pad_k(v: torch.Tensor, i: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if v.shape[1] >= k:
        return v, i
    B, m = v.shape
    return (torch.cat([v, torch.full((B, k - m), float("-inf"))], 1), torch.cat([i, torch.full((B, k - m), -1, dtype=i.dtype)], 1))


class FaissIndex:
    """A FAISS inner-product index (``flat`` exact, ``ivf`` or ``hnsw`` approximate)."""

    backend = "faiss"

    def __init__(self, items, metric: str = "cosine", kind: str = "flat", nlist: int | None = None, nprobe: int = 16,
                 hnsw_m: int = 32, ef_search: int = 128, seed: int = 0):
        import faiss

        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r} ({', '.join(METRICS)})")
        x = np.ascontiguousarray(_as_tensor(items).detach().float().cpu().numpy())
        if metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            x = np.ascontiguousarray(x, dtype=np.float32)
        self.metric, self.kind = metric, kind
        n, d = x.shape
        ip = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nl = nlist or max(1, int(4 * np.sqrt(n)))
            nl = min(nl, n)
            quant = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quant, d, nl, ip)
            index.cp.seed = seed
            index.train(x)
            index.nprobe = min(nprobe, nl)
            self._quantizer = quant  # keep it alive
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m, ip)
            index.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"unknown faiss index kind {kind!r} (flat | ivf | hnsw)")
        index.add(x)
        self.index = index
        self._n = n

    @property
    def n_items(self) -> int:
        return self._n

    def search(self, queries, k: int, exclude=None) -> tuple[torch.Tensor, torch.Tensor]:
        q = np.ascontiguousarray(_as_tensor(queries).detach().float().cpu().numpy())
        if self.metric == "cosine":
            q = np.ascontiguousarray(q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12), dtype=np.float32)
        B = q.shape[0]
        excl = _exclude_lists(exclude, B)
        extra = max((len(e) for e in excl), default=0) if excl is not None else 0
        kk = min(k + extra, self._n)
        D, I = self.index.search(q, kk)
        out_v = np.full((B, k), -np.inf, dtype=np.float32)
        out_i = np.full((B, k), -1, dtype=np.int64)
        for r in range(B):
            ids, vals = I[r], D[r]
            keep = ids >= 0
            if excl is not None and len(excl[r]):
                keep &= ~np.isin(ids, excl[r])
            ids, vals = ids[keep][:k], vals[keep][:k]
            out_i[r, : len(ids)] = ids
            out_v[r, : len(ids)] = vals
        return torch.from_numpy(out_v), torch.from_numpy(out_i)


def build_index(items, backend: str = "exact", metric: str = "cosine", **kw):
    """``backend``: ``exact`` (torch), ``faiss`` (flat), ``faiss-ivf``, ``faiss-hnsw``, or ``auto``
    (exact below 200k items, else FAISS IVF)."""
    n = int(_as_tensor(items).shape[0])
    if backend == "auto":
        backend = "exact" if n < 200_000 else "faiss-ivf"
    if backend == "exact":
        return ExactIndex(items, metric=metric, **kw)
    if backend in ("faiss", "faiss-flat"):
        return FaissIndex(items, metric=metric, kind="flat", **kw)
    if backend == "faiss-ivf":
        return FaissIndex(items, metric=metric, kind="ivf", **kw)
    if backend == "faiss-hnsw":
        return FaissIndex(items, metric=metric, kind="hnsw", **kw)
    raise ValueError(f"unknown retrieval backend {backend!r} (exact | faiss | faiss-ivf | faiss-hnsw | auto)")
