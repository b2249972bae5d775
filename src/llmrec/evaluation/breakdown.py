"""Metrics by history length: the per-row metrics of one evaluation, averaged within buckets of the length of the
history each row was ranked from. ``llmrec run`` writes them to metrics.json as ``by_history_length``; the HTML
report plots them."""

from __future__ import annotations

import numpy as np

# lower bounds of the buckets (items in the history); a bucket runs to the next bound minus one
EDGES = (0, 3, 5, 8, 12, 20, 50, 100, 200, 500)


def bucket_label(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"{lo}+"
    return str(lo) if hi == lo else f"{lo}–{hi}"


def history_breakdown(history_lengths, rows: dict, edges=EDGES) -> list[dict]:
    """``rows``: metric -> per-row values (the evaluator's ``keep_rows``), aligned with ``history_lengths``.
    One dict per non-empty bucket: ``history`` (label), ``min``, ``max`` (null for the last), ``users`` and the
    mean of every metric over the bucket's rows."""
    lengths = np.asarray(history_lengths, dtype=np.int64)
    vals = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in rows.items()}
    vals = {k: v for k, v in vals.items() if len(v) == len(lengths)}
    bucket = np.searchsorted(np.asarray(edges), lengths, side="right") - 1
    out = []
    for b, lo in enumerate(edges):
        sel = bucket == b
        n = int(sel.sum())
        if not n:
            continue
        hi = edges[b + 1] - 1 if b + 1 < len(edges) else None
        rec = {"history": bucket_label(lo, hi), "min": int(lo), "max": hi, "users": n}
        for k, v in vals.items():
            x = v[sel]
            x = x[np.isfinite(x)]
            rec[k] = float(x.mean()) if len(x) else None
        out.append(rec)
    return out
