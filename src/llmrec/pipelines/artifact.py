"""The servable run artefact: what ``llmrec recommend`` / ``export`` / ``serve`` need besides the model weights.

``llmrec run`` writes, right after the model (``DIR/model/config.json`` + ``model.safetensors``)::

    DIR/model/serving.json     format version, dataset, split protocol, counts, text columns, data fingerprint
    DIR/model/users.parquet    row u = user index u: ``user_id`` (original id), ``history`` (item indices),
                               and for session protocols ``session_lengths`` (the history cut into sessions)
    DIR/model/items.parquet    row i = item index i: ``item_id`` (original id) and the item text columns

**Which history a known user has at serve time**: the user's *whole* known sequence — training items, the
validation item and the test item (for session protocols: every session of the prepared split, the held-out
ones included, in order). Serving recommends what comes *after* everything we know, so this is one item
longer than the test history the evaluator used (``seq[:-1]``).

:func:`load_artifact` reads only these files and the model; it never loads, prepares or splits the dataset.
Runs made before these files existed are refused with one line saying how to add them
(``llmrec artifact RUN_DIR``, which rebuilds them from the run's ``config.yaml`` and checks the data
fingerprint against the model's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from llmrec.utils.io import atomic_write_json

FORMAT = "llmrec-serving"
VERSION = 1
FILES = ("serving.json", "users.parquet", "items.parquet")
HISTORY_NOTE = "whole known sequence per user (training + validation + test items, in order)"


class ArtifactError(ValueError):
    """A run directory that cannot be served (missing or inconsistent files); the message says what to do."""


# ----------------------------------------------------------------------------------------------------
# writing


def _session_lengths(split) -> list[list[int]] | None:
    """Per user (split index), the lengths of the sessions that make up ``split.dataset.sequence(u)``.

    Training sessions come from ``split.train_sessions``; the held-out (validation, test) part is cut exactly
    from the last test row of the user when there is one (its ``sessions[:-1]`` are the complete earlier
    sessions), otherwise at idle gaps > ``session_gap`` seconds (users whose held-out sessions were too short
    to evaluate)."""
    if split.train_sessions is None:
        return None
    ds = split.dataset
    gap = int(split.info.get("session_gap", 1800))
    earlier_len: dict[int, list[int]] = {}
    for es in (split.valid, split.test):  # test last: its rows know the validation session's length too
        if es.sessions is None:
            continue
        for u, ss in zip(es.users.tolist(), es.sessions):
            earlier_len[int(u)] = [len(s) for s in ss[:-1]]
    out: list[list[int]] = []
    for u in range(ds.n_users):
        lens = [len(s) for s in split.train_sessions[u]]
        known = earlier_len.get(u)
        if known is not None and len(known) >= len(lens):
            lens = list(known)
        start = int(ds.user_ptr[u]) + sum(lens)
        end = int(ds.user_ptr[u + 1])
        if end > start:  # the rest: cut at idle gaps (exact for evaluated users: one remaining session)
            order = ds.seq_order[start:end]
            cuts = np.flatnonzero(np.diff(order) > gap) + 1 if known is None or len(known) < 2 else np.zeros(0, int)
            bounds = np.r_[0, cuts, end - start]
            lens += [int(b - a) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        out.append([x for x in lens if x > 0])
    return out


def save_artifact(model_dir: str | Path, split, fingerprint: dict | None) -> None:
    """Write the serving files for a model fit on ``split`` into ``model_dir`` (beside the model)."""
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    ds = split.dataset
    seqs = ds.sequences()
    cols: dict = {
        "user_id": pl.Series([str(x) for x in ds.user_ids], dtype=pl.Utf8),
        "history": pl.Series([s.astype(np.int64) for s in seqs], dtype=pl.List(pl.Int64)),
    }
    sess = _session_lengths(split)
    if sess is not None:
        cols["session_lengths"] = pl.Series(sess, dtype=pl.List(pl.Int64))
    _write_parquet(pl.DataFrame(cols), d / "users.parquet")

    text = ds.item_text
    items = pl.DataFrame({"item": np.arange(ds.n_items, dtype=np.int64),
                          "item_id": pl.Series([str(x) for x in ds.item_ids], dtype=pl.Utf8)})
    text_cols = [c for c in text.columns if c != "item"]
    if text_cols:
        t = text.with_columns(pl.col("item").cast(pl.Int64)).select(["item", *text_cols])
        items = items.join(t, on="item", how="left").sort("item")
    _write_parquet(items, d / "items.parquet")

    atomic_write_json(d / "serving.json", {
        "format": FORMAT,
        "version": VERSION,
        "dataset": ds.name,
        "protocol": split.protocol,
        "n_users": int(ds.n_users),
        "n_items": int(ds.n_items),
        "history": HISTORY_NOTE,
        "sessions": sess is not None,
        "text_columns": text_cols,
        "title_column": _title_column(text_cols),
        "data_fingerprint": fingerprint,
    })


def _title_column(cols: list[str]) -> str | None:
    for c in ("title", "name", "movie_title", "item_name"):
        if c in cols:
            return c
    return cols[0] if cols else None


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.write_parquet(tmp)
    tmp.replace(path)


def backfill_artifact(run_dir: str | Path) -> Path:
    """Add the serving files to a run made before they existed: rebuild the split from the run's config.yaml
    and refuse (FingerprintMismatch) when that data differs from what the model was trained on."""
    from llmrec.config import load_config
    from llmrec.data.dataset import load_dataset
    from llmrec.data.fingerprint import check_same_data, data_fingerprint
    from llmrec.pipelines.run import make_split

    rd = Path(run_dir)
    mdir = _model_dir(rd)
    cfg_path = rd / "config.yaml"
    if not cfg_path.exists():
        raise ArtifactError(f"{cfg_path}: missing; `llmrec artifact` rebuilds the serving files from the run's config")
    cfg = load_config(cfg_path, [])
    mcfg = json.loads((mdir / "config.json").read_text())
    ds = load_dataset(cfg.data)
    split = make_split(ds, cfg)
    fp = data_fingerprint(ds, cfg.data, split.protocol)
    check_same_data(fp, mcfg.get("data_fingerprint"), f"model {mdir}")
    save_artifact(mdir, split, fp)
    return mdir


# ----------------------------------------------------------------------------------------------------
# reading


@dataclass
class Artifact:
    """A loaded run: the model plus the id maps, histories and item text (no dataset)."""

    run_dir: Path
    model: object  # llmrec.models.base.Recommender
    meta: dict
    user_ids: list[str]
    item_ids: list[str]
    histories: list[np.ndarray]  # per user index: the whole known sequence (item indices)
    session_lengths: list[list[int]] | None
    items: pl.DataFrame  # item, item_id, text columns (row i = item i)
    user_index: dict[str, int] = field(default_factory=dict)
    item_index: dict[str, int] = field(default_factory=dict)
    titles: list[str | None] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def fingerprint(self) -> dict | None:
        return self.meta.get("data_fingerprint")

    def sessions_of(self, u: int) -> list[np.ndarray] | None:
        if self.session_lengths is None:
            return None
        h = self.histories[u]
        cuts = np.cumsum(self.session_lengths[u])[:-1]
        return [np.asarray(s, dtype=np.int64) for s in np.split(h, cuts)] if len(h) else []

    def item_row(self, i: int) -> dict:
        row = self.items.row(i, named=True)
        return {"item_id": row["item_id"], "index": int(row["item"]),
                **{c: row[c] for c in self.meta.get("text_columns", [])}}


def _model_dir(run_dir: Path) -> Path:
    if (run_dir / "config.json").exists() and (run_dir / "model.safetensors").exists():
        return run_dir  # given the model directory itself
    m = run_dir / "model"
    if not (m / "config.json").exists():
        raise ArtifactError(f"{run_dir}: not a run directory (no model/config.json); train one with `llmrec run CONFIG --out DIR`")
    return m


def _eval_mode(model) -> None:
    """Put every network the model holds in eval mode once, so that concurrent score() calls never toggle
    train/eval mode under each other (dropout off for good)."""
    import torch

    for v in vars(model).values():
        if isinstance(v, torch.nn.Module):
            v.eval()


def load_artifact(run_dir: str | Path, *, load_model: bool = True) -> Artifact:
    """Load a run directory (or its ``model/`` directory) for inference; never touches the dataset."""
    from llmrec.data.fingerprint import check_same_data

    rd = Path(run_dir)
    if not rd.exists():
        raise ArtifactError(f"{rd}: no such run directory")
    mdir = _model_dir(rd)
    missing = [f for f in FILES if not (mdir / f).exists()]
    if missing:
        raise ArtifactError(
            f"{mdir}: no serving files ({', '.join(missing)}); this run was made before llmrec saved them. "
            f"Re-run it, or add them with `llmrec artifact {rd}` (rebuilds them from its config.yaml and data)")
    meta = json.loads((mdir / "serving.json").read_text())
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
        raise ArtifactError(f"{mdir / 'serving.json'}: format {meta.get('format')!r} v{meta.get('version')} is not "
                            f"one this llmrec reads ({FORMAT} v{VERSION})")
    users = pl.read_parquet(mdir / "users.parquet")
    items = pl.read_parquet(mdir / "items.parquet")
    if users.height != meta["n_users"] or items.height != meta["n_items"]:
        raise ArtifactError(f"{mdir}: users.parquet / items.parquet do not match serving.json's counts; re-create them")
    model = None
    if load_model:
        from llmrec.models.base import Recommender

        model = Recommender.load(mdir)
        if model.n_items != meta["n_items"]:
            raise ArtifactError(f"{mdir}: the model scores {model.n_items} items but the serving files list "
                                f"{meta['n_items']}; re-create them with `llmrec artifact {rd}`")
        if meta.get("data_fingerprint") is not None:
            check_same_data(meta["data_fingerprint"], model.data_fingerprint, f"model {mdir}")
        _eval_mode(model)
    user_ids = users["user_id"].to_list()
    item_ids = items["item_id"].to_list()
    histories = [np.asarray(h, dtype=np.int64) for h in users["history"].to_list()]
    sess = users["session_lengths"].to_list() if "session_lengths" in users.columns else None
    tcol = meta.get("title_column")
    titles = items[tcol].cast(pl.Utf8).to_list() if tcol and tcol in items.columns else [None] * len(item_ids)
    return Artifact(
        run_dir=rd, model=model, meta=meta, user_ids=user_ids, item_ids=item_ids, histories=histories,
        session_lengths=sess, items=items,
        user_index={u: i for i, u in enumerate(user_ids)},
        item_index={it: i for i, it in enumerate(item_ids)},
        titles=titles,
    )
