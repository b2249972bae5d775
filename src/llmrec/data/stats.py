"""Dataset statistics for `llmrec data stats`."""

from __future__ import annotations

import numpy as np

from llmrec.data.dataset import Dataset


def dataset_stats(ds: Dataset) -> dict:
    lens = ds.lengths()
    text_cols = ds.text_columns()
    coverage = {}
    for c in text_cols:
        col = ds.item_text[c]
        non_empty = int(((col.is_not_null()) & (col.cast(str).str.len_chars() > 0)).sum())
        coverage[c] = non_empty / ds.n_items
    leak = ds.info.get("id_leak", {})
    seqs = ds.sequences()
    repeats_in_history = float(np.mean([s[-1] in set(s[:-1].tolist()) for s in seqs if len(s) >= 2])) if seqs else 0.0
    out = {
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "density": ds.n_interactions / max(1, ds.n_users * ds.n_items),
        "seq_len": {
            "min": int(lens.min()),
            "mean": float(lens.mean()),
            "median": float(np.median(lens)),
            "max": int(lens.max()),
        },
        "has_timestamps": ds.has_timestamps,
        "last_item_repeats_history": repeats_in_history,
        "text_coverage": coverage or {"(no item text)": 0.0},
        "id_order": ds.info.get("prepare", {}).get("id_order"),
        "id_leak_consecutive_diff1": {
            "original_ids": leak.get("original", {}).get("consecutive_pairs_diff1"),
            "current_ids": leak.get("current", {}).get("consecutive_pairs_diff1"),
        },
        "id_leak_test_is_max_plus_1": {
            "original_ids": leak.get("original", {}).get("test_is_max_plus_1"),
            "current_ids": leak.get("current", {}).get("test_is_max_plus_1"),
        },
        "load_seconds": ds.info.get("load_seconds"),
        "from_cache": ds.info.get("from_cache"),
        "notes": ds.notes,
    }
    return out
