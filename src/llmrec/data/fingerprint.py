"""Data fingerprints: what a saved model was trained on, so that two pipeline stages built on different data
(or on different item ids) are refused instead of silently combined.

A fingerprint records the dataset name, the preparation options that change which items exist and what their
indices are (filters, dedup, id order and seed), the split protocol, the catalogue size, and a hash of the
interaction arrays and the index -> original id maps. Two runs agree when their ``hash`` is equal; when they
differ, :func:`explain_mismatch` names the fields that differ.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

FIELDS = ("dataset", "dedup", "behaviors", "min_user_interactions", "min_item_interactions", "id_order", "id_seed",
          "split", "n_users", "n_items", "n_interactions", "content")


class FingerprintMismatch(ValueError):
    pass


def _hash_ids(ids: list[str]) -> str:
    h = hashlib.sha256()
    for x in ids:
        h.update(str(x).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def data_fingerprint(ds, data_cfg=None, split_protocol: str | None = None) -> dict:
    """The fingerprint of prepared dataset ``ds`` (prepared with ``data_cfg``) under ``split_protocol``."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ds.user_ptr, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(ds.seq_items, dtype=np.int64).tobytes())
    h.update(_hash_ids(ds.user_ids).encode())
    h.update(_hash_ids(ds.item_ids).encode())
    fp = {
        "dataset": ds.name,
        "dedup": getattr(data_cfg, "dedup", None),
        "behaviors": getattr(data_cfg, "behaviors", None),
        "min_user_interactions": getattr(data_cfg, "min_user_interactions", None),
        "min_item_interactions": getattr(data_cfg, "min_item_interactions", None),
        "id_order": getattr(data_cfg, "id_order", None),
        "id_seed": getattr(data_cfg, "id_seed", None),
        "split": split_protocol,
        "n_users": int(ds.n_users),
        "n_items": int(ds.n_items),
        "n_interactions": int(ds.n_interactions),
        "content": h.hexdigest()[:16],
    }
    fp["hash"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    return fp


def explain_mismatch(expected: dict, got: dict) -> list[str]:
    return [f"{k}: {got.get(k)!r} (expected {expected.get(k)!r})" for k in FIELDS if expected.get(k) != got.get(k)]


def check_same_data(expected: dict, got: dict | None, what: str) -> None:
    """Raise :class:`FingerprintMismatch` naming the differing fields when ``got`` is not ``expected``."""
    if got is None:
        raise FingerprintMismatch(f"{what} records no data fingerprint (made before llmrec recorded one); re-run it")
    if expected.get("hash") != got.get("hash"):
        diff = "; ".join(explain_mismatch(expected, got)) or "content differs"
        raise FingerprintMismatch(f"{what} was built on other data or other item ids: {diff}")
