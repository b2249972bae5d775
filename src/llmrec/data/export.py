"""Export a prepared :class:`~llmrec.data.dataset.Dataset` for other frameworks.

``recbole`` — RecBole atomic files, so that RecBole trains and evaluates on exactly llmrec's data::

    OUT/<name>.inter   user_id:token  item_id:token  timestamp:float   (one row per interaction)
    OUT/<name>.item    item_id:token  <text column>:token_seq ...      (one row per item, index order)
    OUT/<name>.yaml    a RecBole config for this data: fields, load_col, LS split, TO order, full ranking
    OUT/export.json    what was exported and how (counts, token meaning, timestamp meaning, caveats)

``<name>`` is the name of ``OUT`` (RecBole reads ``data_path/<dataset>/<dataset>.inter``, so the file stem
must equal the folder name): point RecBole at ``data_path: OUT/..`` and ``dataset: <name>``.

What the files hold, and why RecBole's leave-one-out ('LS': 'valid_and_test', order 'TO') then gives the same
train / validation / test as llmrec's :func:`~llmrec.data.splits.leave_one_out`:

* **Tokens are llmrec's indices** after every preprocessing step (dedup, k-core, the seeded random item
  permutation of ``id_order: random``): ``item_id`` = the item index, ``user_id`` = the user index, written as
  decimal strings. RecBole renumbers tokens in order of first appearance in the ``.inter`` file (0 = [PAD]),
  so *its* internal ids differ from ours; map back with ``dataset.id2token`` — the token is our index.
* **Rows are written user by user in llmrec's sequence order** (the stable chronological sort).
* **Timestamps** (``timestamp="position"``, the default) are the 0-based position of the interaction in its
  user's sequence. RecBole sorts interactions with ``np.argsort(kind="stable")`` by (user, timestamp) before
  building prefixes and again by timestamp before splitting; positions are distinct within a user and exact
  in RecBole's float32 timestamp tensors (up to 2**24 interactions per user), so RecBole reconstructs every
  user's sequence exactly, whatever the dataset's real clock (the P5 files have none). With
  ``timestamp="order"`` the column holds llmrec's order key instead (unix seconds when the dataset has them,
  else the position); RecBole then reproduces our order because the rows are already in it and its sorts
  are stable (ties — many ML ratings share a second — keep file order, as in llmrec). float32 rounding of
  large unix times only creates more ties, which the stable sort resolves the same way.
* **Known difference — users with exactly 3 interactions.** RecBole splits the *augmented* rows (one per
  prefix, so n - 1 rows for n interactions) and leaves out ``min(2, rows - 1)`` of them: such a user gets a
  test example but **no validation example**, and RecBole trains on (s0 -> s1), which llmrec uses as the
  validation example. Users with >= 4 interactions are identical; users with <= 2 are training-only in
  both. ``export.json`` counts the users affected (0 on the 5-core P5 data and MovieLens).
* RecBole truncates histories to ``MAX_ITEM_LIST_LENGTH`` (50 by default) when it builds prefixes; llmrec
  models apply their own ``max_len``. The split itself is unaffected.

No RecBole code is used or needed to write the files.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import yaml

from llmrec.data.dataset import Dataset

FORMATS = ("recbole",)
TIMESTAMP_MODES = ("position", "order")
_FLOAT32_EXACT = 2**24


def _clean_text(v) -> str:
    if v is None:
        return ""
    s = str(v)
    return re.sub(r"[\t\r\n]+", " ", s).strip()


def _field_name(col: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_]+", "_", col).strip("_") or "text"
    return name if name not in ("item_id", "user_id", "timestamp") else f"{name}_text"


def recbole_timestamps(ds: Dataset, mode: str = "position") -> np.ndarray:
    """The ``timestamp`` column written for each interaction (in ``ds.seq_items`` order)."""
    if mode == "position":
        lens = ds.lengths()
        if len(lens) and lens.max() > _FLOAT32_EXACT:
            raise ValueError(f"a user has {lens.max():,} interactions: positions above 2**24 are not exact in float32")
        starts = np.repeat(ds.user_ptr[:-1], lens)
        return np.arange(ds.n_interactions, dtype=np.int64) - starts
    if mode == "order":
        return ds.seq_order.astype(np.int64)
    raise ValueError(f"unknown timestamp mode {mode!r} ({' | '.join(TIMESTAMP_MODES)})")


def recbole_config(name: str, data_path: str | Path, *, max_len: int = 50) -> dict:
    """A RecBole config dict that reads the exported files and evaluates with llmrec's protocol.

    (Full ranking; RecBole does not mask history for sequential models and breaks score ties by index
    order — see README, 'Evaluation protocol'.)"""
    return {
        "data_path": str(data_path),
        "dataset": name,
        "field_separator": "\t",
        "seq_separator": " ",
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": max_len,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "repeatable": True,
    }


def export_recbole(
    ds: Dataset,
    out_dir: str | Path,
    *,
    timestamp: str = "position",
    items: bool = True,
    source: dict | None = None,
) -> dict:
    """Write RecBole atomic files for ``ds`` into ``out_dir``; returns the manifest (also ``export.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = out.resolve().name
    ts = recbole_timestamps(ds, timestamp)
    lens = ds.lengths()
    users = np.repeat(np.arange(ds.n_users, dtype=np.int64), lens)

    files = []
    inter = out / f"{name}.inter"
    tmp = inter.with_suffix(".inter.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        step = 200_000
        for s in range(0, ds.n_interactions, step):
            e = min(s + step, ds.n_interactions)
            f.write("".join(f"{u}\t{i}\t{t}\n" for u, i, t in zip(users[s:e].tolist(), ds.seq_items[s:e].tolist(), ts[s:e].tolist())))
    tmp.replace(inter)
    files.append(inter.name)

    text_fields: dict[str, str] = {}
    if items:
        cols = ds.text_columns()
        seen: set[str] = set()
        for c in cols:
            fname = _field_name(c)
            while fname in seen:
                fname += "_"
            seen.add(fname)
            text_fields[c] = fname
        rows = {r["item"]: r for r in ds.item_text.iter_rows(named=True)}
        item_path = out / f"{name}.item"
        tmp = item_path.with_suffix(".item.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            # header written by hand: RecBole splits it on the separator without CSV parsing
            f.write("\t".join(["item_id:token"] + [f"{text_fields[c]}:token_seq" for c in cols]) + "\n")
            w = csv.writer(f, delimiter="\t", quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            for i in range(ds.n_items):
                r = rows.get(i, {})
                w.writerow([str(i)] + [_clean_text(r.get(c)) for c in cols])
        tmp.replace(item_path)
        files.append(item_path.name)

    cfg_path = out / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(recbole_config(name, out.resolve().parent), sort_keys=False))
    files.append(cfg_path.name)

    import llmrec

    manifest = {
        "format": "recbole",
        "llmrec_version": llmrec.__version__,
        "dataset": ds.name,
        "name": name,
        "files": files,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "user_token": "llmrec user index (0-based, users in their original id order)",
        "item_token": "llmrec item index (0-based, after the id_order permutation)",
        "timestamp": timestamp,
        "timestamp_meaning": (
            "0-based position in the user's chronological sequence"
            if timestamp == "position"
            else ("unix seconds" if ds.has_timestamps else "llmrec order key (position in the source file's sequence)")
        ),
        "has_timestamps": ds.has_timestamps,
        "item_text_fields": text_fields,
        "recbole_split_caveats": {
            "users_with_3_interactions_no_valid_in_recbole": int((lens == 3).sum()),
            "users_training_only": int((lens < 3).sum()),
        },
        "prepare": ds.info.get("prepare"),
        "source": source,
        "notes": ds.notes,
    }
    (out / "export.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def export_dataset(ds: Dataset, fmt: str, out_dir: str | Path, **kw) -> dict:
    """Export ``ds`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "recbole":
        return export_recbole(ds, out_dir, **kw)
    raise ValueError(f"unknown export format {fmt!r}; available: {', '.join(FORMATS)}")
