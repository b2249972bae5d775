"""Ranking metrics for sequential recommendation.

Every function here is vectorised over a batch of rows and never loops over
rows in Python.  Ties are always resolved *pessimistically*: an item whose
score equals a target's score is ranked ahead of that target, so a model can
never gain from emitting constant or coarsely quantised scores.

Conventions
-----------
* ``scores`` is a ``(B, N)`` tensor; larger means "recommend earlier".
* ``exclude`` is an optional ``(B, N)`` bool mask of items removed from the
  ranking entirely (e.g. already-seen history items).  A target column is never
  excluded, whatever ``exclude`` says.
* NaN scores that take part in a ranking raise :class:`ValueError`; NaN in an
  excluded (non-target) position is ignored, since that item is not ranked.
* ``-inf`` is an ordinary (lowest) score: a target scored ``-inf`` ties with,
  and therefore ranks below, every other non-excluded item.
* Per-row metric values are ``float64`` tensors of shape ``(B,)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = [
    "METRIC_NAMES",
    "pessimistic_rank",
    "pessimistic_rank_excluding",
    "single_target_metrics",
    "multi_target_metrics",
    "candidate_ranks",
    "candidate_ties",
    "MetricAccumulator",
]

METRIC_NAMES = ("HR", "NDCG", "MRR", "Precision", "Recall")


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _check_scores(scores: torch.Tensor) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape (B, N), got {tuple(scores.shape)}")
    if scores.is_complex():
        raise TypeError("scores must be real-valued")
    if scores.dtype == torch.bool:
        scores = scores.to(torch.float64)
    return scores


def _check_exclude(exclude: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor | None:
    if exclude is None:
        return None
    if not isinstance(exclude, torch.Tensor):
        raise TypeError("exclude must be a bool torch.Tensor or None")
    if exclude.dtype != torch.bool:
        raise TypeError(f"exclude must have dtype torch.bool, got {exclude.dtype}")
    if exclude.shape != scores.shape:
        raise ValueError(
            f"exclude shape {tuple(exclude.shape)} does not match scores shape {tuple(scores.shape)}"
        )
    return exclude.to(scores.device)


def _check_ks(ks: Sequence[int]) -> list[int]:
    if isinstance(ks, int):
        ks = [ks]
    out: list[int] = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int):
            # accept numpy / torch integer scalars
            try:
                import numbers

                if not isinstance(k, numbers.Integral) or isinstance(k, bool):
                    raise TypeError
                k = int(k)
            except TypeError:
                raise TypeError(f"cutoffs must be positive integers, got {k!r}") from None
        if k < 1:
            raise ValueError(f"cutoffs must be >= 1, got {k}")
        if k not in out:
            out.append(k)
    if not out:
        raise ValueError("at least one cutoff k is required")
    return out


def _raise_on_nan(scores: torch.Tensor, ranked: torch.Tensor | None) -> None:
    """Raise if any score that takes part in the ranking is NaN.

    ``ranked`` is a bool mask of participating entries (None = all)."""
    if not scores.is_floating_point():
        return
    nan = torch.isnan(scores)
    if ranked is not None:
        nan &= ranked
    if bool(nan.any()):
        rows = torch.nonzero(nan.any(dim=1)).flatten()[:5].tolist()
        raise ValueError(f"NaN scores in ranked items (first offending rows: {rows})")


def _discounts(n: int, device: torch.device) -> torch.Tensor:
    """1 / log2(p + 1) for positions p = 1..n, float64."""
    pos = torch.arange(2, n + 2, dtype=torch.float64, device=device)
    return 1.0 / torch.log2(pos)


# ---------------------------------------------------------------------------
# single target
# ---------------------------------------------------------------------------


def _check_targets(targets, scores: torch.Tensor) -> torch.Tensor:
    B, N = scores.shape
    if not isinstance(targets, torch.Tensor):
        targets = torch.as_tensor(targets)
    if targets.dim() != 1 or targets.shape[0] != B:
        raise ValueError(f"targets must have shape ({B},), got {tuple(targets.shape)}")
    if targets.dtype == torch.bool or targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"targets must be an integer tensor, got {targets.dtype}")
    targets = targets.to(device=scores.device, dtype=torch.long)
    if B and (bool((targets < 0).any()) or bool((targets >= N).any())):
        raise ValueError(f"target indices must lie in [0, {N})")
    return targets


def _has_nan(scores: torch.Tensor) -> bool:
    """Any NaN in ``scores`` (amax propagates NaN: one reduction pass, no (B, N) bool temporary)."""
    return scores.is_floating_point() and scores.numel() > 0 and bool(torch.isnan(scores.amax(dim=1)).any())


def _row_count(ahead: torch.Tensor) -> torch.Tensor:
    """(B,) long: True entries per row of a bool (B, N) tensor."""
    if ahead.device.type == "cpu":  # numpy's count_nonzero is ~3x faster than any torch reduction of bools on CPU
        import numpy as np

        return torch.from_numpy(np.count_nonzero(ahead.numpy(), axis=1).astype(np.int64, copy=False))
    # a float32 sum of 0/1 values is exact below 2**24 and much faster than a bool -> long sum
    if ahead.shape[1] < 2**24:
        return ahead.sum(dim=1, dtype=torch.float32).long()
    return ahead.sum(dim=1, dtype=torch.long)


_NUMPY_DTYPES = (torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _count_at_least(scores: torch.Tensor, target_score: torch.Tensor) -> torch.Tensor:
    """(B,) long: items per row scoring >= the row's ``target_score`` (B, 1); on CPU in numpy (the compare and
    the count are each ~2x faster there than in torch, single-threaded)."""
    if scores.device.type == "cpu" and scores.dtype in _NUMPY_DTYPES:
        import numpy as np

        ahead = scores.numpy() >= target_score.numpy()
        return torch.from_numpy(np.count_nonzero(ahead, axis=1).astype(np.int64, copy=False))
    return _row_count(scores >= target_score)


def pessimistic_rank(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """1-based pessimistic rank of a single target per row.

    Args:
        scores: ``(B, N)`` scores.
        targets: ``(B,)`` integer column index of each row's target.
        exclude: optional ``(B, N)`` bool mask of items removed from the
            ranking; the target column is never excluded.

    Returns:
        ``(B,)`` long tensor: ``1 + #{other non-excluded items j : scores[j] >= scores[target]}``.

    Raises:
        ValueError: on NaN in a ranked score, bad shapes or out-of-range targets.
    """
    scores = _check_scores(scores)
    targets = _check_targets(targets, scores)
    exclude = _check_exclude(exclude, scores)

    target_score = scores.gather(1, targets[:, None])  # (B, 1)
    if _has_nan(scores):  # fast path: one reduction, no (B, N) temporary, when clean
        if bool(torch.isnan(target_score).any()):
            raise ValueError("NaN score at a target item")
        nan = torch.isnan(scores)
        if exclude is not None:
            nan &= ~exclude
        if bool(nan.any()):
            rows = torch.nonzero(nan.any(dim=1)).flatten()[:5].tolist()
            raise ValueError(f"NaN scores in ranked items (first offending rows: {rows})")

    # Count every non-excluded item scoring >= the target, then drop the
    # target's own contribution (it always satisfies >= itself; it is missing
    # from the count only when `exclude` wrongly flags it).
    if exclude is None:
        return _count_at_least(scores, target_score)  # = 1 + #others
    ahead = scores >= target_score
    ahead.logical_and_(exclude.logical_not())
    count = _row_count(ahead)
    target_flagged = exclude.gather(1, targets[:, None]).squeeze(1)
    return count + target_flagged.long()


def pessimistic_rank_excluding(
    scores: torch.Tensor,
    targets: torch.Tensor,
    excluded: Sequence,
) -> torch.Tensor:
    """:func:`pessimistic_rank` with ``exclude`` given as per-row item lists (e.g. histories), without a
    ``(B, N)`` mask: every item scoring >= the target is counted in one pass, then the distinct listed items
    (other than the target) that were counted are subtracted -- work on the lists, not on the catalogue.

    Same result and the same errors as ``pessimistic_rank(scores, targets, mask)`` with ``mask`` built from
    ``excluded``; NaN scores fall back to that path (NaN in an excluded item is allowed there)."""
    import numpy as np

    scores = _check_scores(scores)
    B, N = scores.shape
    if len(excluded) != B:
        raise ValueError(f"excluded must have one item list per row ({B}), got {len(excluded)}")
    lens = np.fromiter((len(h) for h in excluded), dtype=np.int64, count=B)
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in excluded]) if lens.sum() else np.zeros(0, np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= N):
        raise ValueError(f"excluded item indices must lie in [0, {N})")
    rows = np.repeat(np.arange(B, dtype=np.int64), lens)

    def dense() -> torch.Tensor:
        m = torch.zeros((B, N), dtype=torch.bool, device=scores.device)
        if cols.size:
            m[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = True
        return pessimistic_rank(scores, targets, m)

    t = _check_targets(targets, scores)
    if _has_nan(scores):
        return dense()
    target_score = scores.gather(1, t[:, None])  # (B, 1)
    count = _count_at_least(scores, target_score)  # 1 + #others >= target
    if not cols.size:
        return count
    rows_t, cols_t = torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)
    ahead = (scores[rows_t, cols_t] >= target_score[rows_t, 0]) & (cols_t != t[rows_t])  # the target is never excluded
    keys = np.unique((rows_t[ahead] * N + cols_t[ahead]).cpu().numpy())  # a listed item counts once
    return count - torch.bincount(torch.from_numpy(keys // N).to(scores.device), minlength=B)


def single_target_metrics(ranks: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-row metrics from 1-based ranks of a single target.

    For each ``k`` in ``ks``: ``HR@k = [rank <= k]``, ``NDCG@k = 1/log2(rank+1)``
    if ``rank <= k`` else 0, ``MRR@k = 1/rank`` if ``rank <= k`` else 0,
    ``Precision@k = HR@k / k``, ``Recall@k = HR@k``.  Values are float64 ``(B,)``.
    """
    ks = _check_ks(ks)
    if not isinstance(ranks, torch.Tensor):
        ranks = torch.as_tensor(ranks)
    if ranks.dim() != 1:
        raise ValueError(f"ranks must have shape (B,), got {tuple(ranks.shape)}")
    if ranks.dtype == torch.bool or ranks.is_floating_point() or ranks.is_complex():
        raise TypeError(f"ranks must be an integer tensor, got {ranks.dtype}")
    if ranks.numel() and bool((ranks < 1).any()):
        raise ValueError("ranks are 1-based and must be >= 1")

    r = ranks.to(torch.float64)
    ndcg_full = 1.0 / torch.log2(r + 1.0)
    mrr_full = 1.0 / r
    zero = torch.zeros_like(r)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        hit = ranks <= k
        hr = hit.to(torch.float64)
        out[f"HR@{k}"] = hr
        out[f"NDCG@{k}"] = torch.where(hit, ndcg_full, zero)
        out[f"MRR@{k}"] = torch.where(hit, mrr_full, zero)
        out[f"Precision@{k}"] = hr / k
        out[f"Recall@{k}"] = hr.clone()
    return out


def candidate_ranks(cand_scores: torch.Tensor, target_pos: torch.Tensor | int = 0) -> torch.Tensor:
    """Pessimistic 1-based rank of the positive inside sampled candidate sets.

    Args:
        cand_scores: ``(B, C)`` scores of each row's candidates.
        target_pos: column of the positive, an int for every row or a ``(B,)``
            integer tensor (default 0).
    """
    cand_scores = _check_scores(cand_scores)
    B, _ = cand_scores.shape
    if isinstance(target_pos, torch.Tensor):
        if target_pos.dim() == 0:
            target_pos = target_pos.expand(B)
        targets = target_pos
    else:
        if isinstance(target_pos, bool):
            raise TypeError("target_pos must be an int or an integer tensor")
        targets = torch.full((B,), int(target_pos), dtype=torch.long, device=cand_scores.device)
    return pessimistic_rank(cand_scores, targets)


def candidate_ties(cand_scores: torch.Tensor, target_pos: int = 0) -> torch.Tensor:
    """``(B,)`` float64: 1.0 where another candidate has exactly the positive's score (a tie that the
    pessimistic rank resolves against the positive), else 0.0; its mean is the tie rate of a sampled protocol."""
    cand_scores = _check_scores(cand_scores)
    if cand_scores.shape[1] < 2:
        return torch.zeros(cand_scores.shape[0], dtype=torch.float64, device=cand_scores.device)
    tgt = cand_scores[:, target_pos: target_pos + 1]
    others = torch.cat([cand_scores[:, :target_pos], cand_scores[:, target_pos + 1:]], dim=1)
    return (others == tgt).any(dim=1).to(torch.float64)


# ---------------------------------------------------------------------------
# multiple targets
# ---------------------------------------------------------------------------

# class codes used for the pessimistic tie order: equal scores are ordered
# non-target, then target, then excluded (excluded items also get -inf).
_NON_TARGET, _TARGET, _EXCLUDED = 0, 1, 2


def _topk_target_hits(
    scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None, K: int
) -> torch.Tensor:
    """``(B, K)`` bool: whether position p (0-based) of the pessimistic order is a target.

    Uses ``topk`` plus exact tie accounting instead of a full sort: let ``v`` be
    the K-th largest (masked) score of a row and ``a`` the number of items
    scored strictly above ``v``.  Those ``a`` items are exactly the first ``a``
    positions (ordered among themselves by a small stable sort on
    (score desc, class asc)); positions ``a..K-1`` are filled by items scored
    exactly ``v`` in class order, whose counts are computed over the full row.
    """
    B, N = scores.shape
    device = scores.device
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)

    cls = targets.to(torch.int8)  # 0 non-target, 1 target
    if exclude is not None:
        excl = exclude & ~targets
        masked = scores.masked_fill(excl, float("-inf"))
        cls = cls.masked_fill(excl, _EXCLUDED)
    else:
        masked = scores

    top_vals, top_idx = torch.topk(masked, K, dim=1, largest=True, sorted=True)
    v = top_vals[:, K - 1 : K]  # (B, 1) K-th largest value
    top_cls = cls.gather(1, top_idx)

    # order the selected items by (score desc, class asc) with two stable sorts
    order = torch.sort(top_cls, dim=1, stable=True).indices
    vals_o = top_vals.gather(1, order)
    cls_o = top_cls.gather(1, order)
    order2 = torch.sort(vals_o, dim=1, descending=True, stable=True).indices
    vals_s = vals_o.gather(1, order2)
    cls_s = cls_o.gather(1, order2)

    # positions >= a hold items scored exactly v; rebuild them in class order
    a = (vals_s > v).sum(dim=1, keepdim=True)  # (B, 1), a < K
    eq = masked == v
    n_nt = (eq & (cls == _NON_TARGET)).sum(dim=1, keepdim=True)
    n_t = (eq & (cls == _TARGET)).sum(dim=1, keepdim=True)
    j = torch.arange(K, device=device)[None, :] - a  # offset inside the tie block
    tie_is_target = (j >= n_nt) & (j < n_nt + n_t)
    above_is_target = cls_s == _TARGET
    return torch.where(j < 0, above_is_target, tie_is_target)


def multi_target_metrics(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None,
    ks: Sequence[int],
) -> dict[str, torch.Tensor]:
    """Per-row metrics when each row has a set of target items.

    Items are ranked by score descending; among equal scores non-targets come
    before targets (pessimistic); excluded items are removed (target columns are
    never excluded).  With ``T`` targets in a row and ``hits@k`` the number of
    targets in the first ``k`` positions:

    * ``Recall@k = hits@k / T``, ``Precision@k = hits@k / k``,
      ``HR@k = [hits@k > 0]``;
    * ``NDCG@k = DCG@k / IDCG@k`` with binary gains,
      ``DCG@k = sum_{target positions p <= k} 1/log2(p+1)`` and
      ``IDCG@k = sum_{p=1}^{min(T,k)} 1/log2(p+1)``;
    * ``MRR@k = 1/p_first`` if the first target position ``p_first <= k`` else 0.

    Args:
        scores: ``(B, N)`` scores.
        targets: ``(B, N)`` bool, at least one True per row.
        exclude: optional ``(B, N)`` bool mask of removed items.
        ks: cutoffs.
    """
    ks = _check_ks(ks)
    scores = _check_scores(scores)
    B, N = scores.shape
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.bool:
        raise TypeError("targets must be a (B, N) bool tensor")
    if targets.shape != scores.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} does not match scores shape {tuple(scores.shape)}"
        )
    targets = targets.to(scores.device)
    exclude = _check_exclude(exclude, scores)

    n_targets = targets.sum(dim=1)
    if B and bool((n_targets == 0).any()):
        rows = torch.nonzero(n_targets == 0).flatten()[:5].tolist()
        raise ValueError(f"every row needs at least one target (rows without: {rows})")
    _raise_on_nan(scores, None if exclude is None else (targets | ~exclude))

    device = scores.device
    K = min(max(ks), N)
    hits = _topk_target_hits(scores, targets, exclude, K) if B else torch.zeros(
        (0, K), dtype=torch.bool, device=device
    )

    disc = _discounts(K, device)  # (K,)
    hits_f = hits.to(torch.float64)
    cum_hits = hits_f.cumsum(dim=1)  # (B, K)
    cum_dcg = (hits_f * disc).cumsum(dim=1)  # (B, K)
    ideal_cum = disc.cumsum(dim=0)  # (K,)
    # first target position (1-based), K+1 when none among the first K
    has_hit = hits.any(dim=1)
    first = torch.where(has_hit, hits.to(torch.int8).argmax(dim=1) + 1, torch.full_like(n_targets, K + 1))
    T = n_targets.to(torch.float64)

    out: dict[str, torch.Tensor] = {}
    for k in ks:
        kk = min(k, N)  # positions beyond N hold nothing
        h = cum_hits[:, kk - 1]
        dcg = cum_dcg[:, kk - 1]
        idcg = ideal_cum[torch.clamp(n_targets, max=kk) - 1]
        in_k = first <= kk
        out[f"HR@{k}"] = (h > 0).to(torch.float64)
        out[f"NDCG@{k}"] = dcg / idcg
        out[f"MRR@{k}"] = torch.where(
            in_k, 1.0 / first.to(torch.float64), torch.zeros((), dtype=torch.float64, device=device)
        )
        out[f"Precision@{k}"] = h / k
        out[f"Recall@{k}"] = h / T
    return out


# ---------------------------------------------------------------------------
# accumulation
# ---------------------------------------------------------------------------


class MetricAccumulator:
    """Accumulates per-row metric values over batches and reports means.

    ``add`` takes a mapping of name -> ``(B,)`` tensor (all the same length);
    sums are kept in float64 together with per-metric row counts.  With
    ``keep_rows=True`` the per-row values are also kept (on CPU, float64), e.g.
    for paired significance tests; see :meth:`rows`.
    """

    def __init__(self, keep_rows: bool = False) -> None:
        self.keep_rows = keep_rows
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._rows: dict[str, list[torch.Tensor]] = {}
        self._n_rows = 0

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        batch: dict[str, torch.Tensor] = {}
        length: int | None = None
        for name, val in values.items():
            t = torch.as_tensor(val).detach().to(device="cpu", dtype=torch.float64).reshape(-1)
            if length is None:
                length = t.numel()
            elif t.numel() != length:
                raise ValueError(
                    f"all metrics in one add() must have the same number of rows; "
                    f"{name!r} has {t.numel()}, expected {length}"
                )
            batch[name] = t
        for name, t in batch.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(t.sum().item())
            self._counts[name] = self._counts.get(name, 0) + t.numel()
            if self.keep_rows:
                self._rows.setdefault(name, []).append(t.clone())
        self._n_rows += length or 0

    @property
    def count(self) -> int:
        """Total number of rows added."""
        return self._n_rows

    def result(self) -> dict[str, float]:
        """Mean of every metric over all rows added so far (NaN if no rows)."""
        return {
            name: (self._sums[name] / self._counts[name]) if self._counts[name] else float("nan")
            for name in self._sums
        }

    def rows(self, name: str | None = None) -> dict[str, torch.Tensor] | torch.Tensor:
        """Kept per-row values (requires ``keep_rows=True``): one tensor, or all as a dict."""
        if not self.keep_rows:
            raise RuntimeError("per-row values were not kept; construct with keep_rows=True")
        if name is not None:
            parts = self._rows.get(name)
            if parts is None:
                raise KeyError(name)
            return torch.cat(parts)
        return {n: torch.cat(p) for n, p in self._rows.items()}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()
        self._rows.clear()
        self._n_rows = 0

    def __len__(self) -> int:
        return self._n_rows
