"""The canonical prepared dataset and the preprocessing that builds it.

Every loader returns a :class:`~llmrec.data.loaders.RawData` (original ids, file order). :func:`prepare`
turns it into a :class:`Dataset`:

1. optional behaviour filter (Taobao: ``pv``/``buy``/...);
2. duplicate removal (``dedup``): ``exact`` drops rows identical in (user, item, order) — a re-rating in
   the same second; ``user_item`` keeps only the first interaction of each (user, item) pair; ``none``
   keeps everything (Yelp's repeat visits are real signal);
3. iterative k-core filter (users and items with fewer than ``min_*_interactions`` are removed until
   none are left);
4. dense 0-based indices. Users and items are first numbered in their *original* id order (numeric ids
   numerically, other ids lexicographically). With ``id_order: random`` (the default) the item indices are
   then permuted by a seeded random permutation. P5 files number items in order of first appearance, so
   item ids themselves leak the sequence order; see :func:`id_leak_stats` and the ``NextId`` model;
5. a stable chronological sort per user: ties in ``order`` keep file order (the loaders' ``row``). In ML-1M
   many users rate their last movies in the same second, so this tie rule decides which one is the test
   item: we always take the one that comes later in the original file.

The result is cached as parquet under the cache dir, keyed by the source files and every preprocessing
option, so a second load is near-instant.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmrec.data.errors import DataError
from llmrec.utils.io import atomic_write_dir  # noqa: F401  (re-exported: llmrec.data.dataset.atomic_write_dir)
from llmrec.utils.io import sha256_file, warn
from llmrec.utils.runtime import default_cache_dir

PREPARE_VERSION = 1
CACHE_FORMAT = 2  # meta.json carries sha256 checksums of the parquet files


def check_path_component(v: str) -> str:
    """``v`` names one folder (a run or a cache entry): no path separators, not '.' or '..', not absolute."""
    if not v or not v.strip():
        raise ValueError("must not be empty")
    if "/" in v or "\\" in v or "\x00" in v or v in (".", "..") or Path(v).is_absolute():
        raise ValueError(f"must be a plain name without '/', '\\' or '..' (it names a folder), got {v!r}")
    return v


class GenericSource(BaseModel):
    """Where a user's own interaction log lives (CSV/TSV/parquet, optionally gzipped)."""

    model_config = ConfigDict(extra="forbid")
    interactions: str
    user_col: str = "user"
    item_col: str = "item"
    time_col: str | None = "timestamp"
    behavior_col: str | None = None
    sep: str | None = None
    has_header: bool = True
    items: str | None = None
    item_id_col: str = "item"
    text_cols: list[str] | None = None


class DataConfig(BaseModel):
    """Which dataset and how to prepare it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="dataset name (llmrec data list) or 'generic'")
    path: str | None = Field(None, description="dataset root; default $LLMREC_DATA, else ../shared/datasets")
    generic: GenericSource | None = None
    behaviors: list[str] | None = Field(None, description="keep only these behaviour types")
    dedup: Literal["none", "exact", "user_item"] = "exact"
    min_user_interactions: int = Field(0, ge=0)
    min_item_interactions: int = Field(0, ge=0)
    id_order: Literal["random", "original"] = "random"
    id_seed: int = Field(2024, ge=0)
    cache_dir: str | None = None
    use_cache: bool = True

    @field_validator("name")
    @classmethod
    def _name_is_one_folder(cls, v: str) -> str:  # it names the cache entry's folder
        return check_path_component(v)

    @model_validator(mode="after")
    def _generic_is_not_a_staged_name(self):
        from llmrec.data.loaders import DATASETS

        if self.generic is not None and self.name.strip().lower() in DATASETS:
            raise ValueError(f"data.generic is set (your own files) but data.name is the staged dataset {self.name!r}: "
                             "the results would be labelled as that dataset; use data.name: generic or a name of your own")
        return self


@dataclass
class Dataset:
    """Interactions as per-user chronological sequences (CSR layout) plus the item catalogue."""

    name: str
    n_users: int
    n_items: int
    user_ptr: np.ndarray  # (n_users + 1,) int64 offsets into seq_items
    seq_items: np.ndarray  # (n_interactions,) int64 item index, chronological within each user
    seq_order: np.ndarray  # (n_interactions,) int64 timestamp or position
    seq_behavior: np.ndarray | None  # (n_interactions,) object/str or None
    user_ids: list[str]  # index -> original id
    item_ids: list[str]
    item_text: pl.DataFrame  # column "item" (int index, sorted) + text columns
    has_timestamps: bool
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def n_interactions(self) -> int:
        return int(self.seq_items.shape[0])

    def sequence(self, u: int) -> np.ndarray:
        return self.seq_items[self.user_ptr[u] : self.user_ptr[u + 1]]

    def sequences(self) -> list[np.ndarray]:
        return np.split(self.seq_items, self.user_ptr[1:-1])

    def orders(self) -> list[np.ndarray]:
        return np.split(self.seq_order, self.user_ptr[1:-1])

    def lengths(self) -> np.ndarray:
        return np.diff(self.user_ptr)

    def text_columns(self) -> list[str]:
        return [c for c in self.item_text.columns if c != "item"]

    def raw_item_texts(self) -> list[str]:
        """One string per item index: every text column's value as stored, the non-empty ones joined by a space
        (a corpus, e.g. to train a tiny tokenizer on). The text a model reads is
        :func:`llmrec.llm.text.item_texts`: one template per dataset, missing values cleaned."""
        cols = self.text_columns()
        rows = {r["item"]: r for r in self.item_text.iter_rows(named=True)}
        out = []
        for i in range(self.n_items):
            r = rows.get(i, {})
            out.append(" ".join(v for v in ("" if r.get(c) is None else str(r.get(c)) for c in cols) if v))
        return out


# ----------------------------------------------------------------------------------------------------
# preprocessing


def _natural_order(ids: list[str]) -> list[str]:
    if all(s.isdigit() for s in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def kcore(df: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Iterative k-core: repeat until every user has >= min_user and every item >= min_item rows."""
    if min_user <= 1 and min_item <= 1:
        return df
    while True:
        n = df.height
        if min_item > 1:
            df = df.filter(pl.len().over("item") >= min_item)
        if min_user > 1:
            df = df.filter(pl.len().over("user") >= min_user)
        if df.height == n:
            return df


def _dedup(df: pl.DataFrame, mode: str) -> pl.DataFrame:
    if mode == "none":
        return df
    keys = ["user", "item", "order"] if mode == "exact" else ["user", "item"]
    return df.unique(subset=keys, keep="first", maintain_order=True)


def prepare_raw(raw, cfg: DataConfig) -> Dataset:
    """RawData -> Dataset (no caching)."""
    df = raw.interactions
    if df.height == 0:
        raise DataError(raw.source_files[0] if raw.source_files else raw.name, "no interactions found")
    n_raw = df.height
    if cfg.behaviors:
        if "behavior" not in df.columns or df["behavior"].null_count() == df.height:
            raise DataError(raw.name, "config data.behaviors is set but this dataset has no behaviour column")
        df = df.filter(pl.col("behavior").is_in(cfg.behaviors))
    df = _dedup(df, cfg.dedup)
    n_dedup = df.height
    df = kcore(df, cfg.min_user_interactions, cfg.min_item_interactions)
    if df.height == 0:
        raise DataError(raw.name, "the k-core / behaviour filters removed every interaction")

    user_ids = _natural_order(df["user"].unique().to_list())
    item_ids = _natural_order(df["item"].unique().to_list())
    n_items = len(item_ids)
    perm = np.arange(n_items)
    if cfg.id_order == "random":
        perm = np.random.default_rng(cfg.id_seed).permutation(n_items)
        # perm[original_rank] = new index
    new_item_ids = [""] * n_items
    for r, iid in enumerate(item_ids):
        new_item_ids[perm[r]] = iid
    umap = pl.DataFrame({"user": user_ids, "uidx": np.arange(len(user_ids), dtype=np.int64)})
    imap = pl.DataFrame({"item": item_ids, "iidx": perm.astype(np.int64)})
    df = (
        df.join(umap, on="user", how="left")
        .join(imap, on="item", how="left")
        .sort(["uidx", "order", "row"], maintain_order=True)
    )
    uidx = df["uidx"].to_numpy()
    counts = np.bincount(uidx, minlength=len(user_ids))
    user_ptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=user_ptr[1:])
    behavior = None
    if "behavior" in df.columns and df["behavior"].null_count() < df.height:
        behavior = df["behavior"].to_numpy().astype(str)

    text = raw.items
    if text is not None and text.height > 0:
        text = text.join(imap, on="item", how="inner").drop("item").rename({"iidx": "item"})
        text = text.select(["item"] + [c for c in text.columns if c != "item"]).sort("item")
    else:
        text = pl.DataFrame({"item": np.arange(n_items, dtype=np.int64)})

    ds = Dataset(
        name=raw.name,
        n_users=len(user_ids),
        n_items=n_items,
        user_ptr=user_ptr,
        seq_items=df["iidx"].to_numpy().astype(np.int64),
        seq_order=df["order"].to_numpy().astype(np.int64),
        seq_behavior=behavior,
        user_ids=user_ids,
        item_ids=new_item_ids,
        item_text=text,
        has_timestamps=raw.has_timestamps,
        notes=list(raw.notes),
    )
    ds.info = {
        "raw_interactions": n_raw,
        "after_dedup": n_dedup,
        "after_kcore": df.height,
        "prepare": cfg.model_dump(exclude={"cache_dir", "use_cache", "path"}),
    }
    ds.info["id_leak"] = id_leak_stats(ds, original_rank=np.argsort(perm))
    return ds


def id_leak_stats(ds: Dataset, original_rank: np.ndarray | None = None) -> dict:
    """How much the item ids leak sequence order.

    ``consecutive_pairs_diff1``: share of consecutive pairs (a, b) in the user sequences with |id(b) - id(a)| == 1;
    ``test_is_max_plus_1``: share of users whose last item is max(earlier items) + 1. Reported for the ids as
    they are now (``current``) and, when ``original_rank`` (new index -> original rank) is given, for the
    original ids (``original``).
    """

    def stats(ids: np.ndarray) -> dict:
        seq = ids[ds.seq_items]
        same_user = np.ones(len(seq), dtype=bool)
        same_user[ds.user_ptr[:-1]] = False  # first item of each user has no predecessor
        d = np.abs(np.diff(seq))
        pairs = same_user[1:]
        share = float((d[pairs] == 1).mean()) if pairs.any() else 0.0
        lens = ds.lengths()
        masked = seq.copy()
        masked[ds.user_ptr[1:] - 1] = -1  # hide each user's last item
        prev_max = np.maximum.reduceat(masked, ds.user_ptr[:-1]) if len(seq) else np.array([])
        last = seq[ds.user_ptr[1:] - 1]
        ok = lens >= 2
        nextmax = float((last[ok] == prev_max[ok] + 1).mean()) if ok.any() else 0.0
        return {"consecutive_pairs_diff1": share, "test_is_max_plus_1": nextmax}

    out = {"current": stats(np.arange(ds.n_items))}
    if original_rank is not None:
        out["original"] = stats(np.asarray(original_rank))
    return out


# ----------------------------------------------------------------------------------------------------
# caching


def _cache_key(raw_files: list[str], cfg: DataConfig) -> str:
    h = hashlib.sha256()
    h.update(f"v{PREPARE_VERSION}".encode())
    for f in sorted(raw_files):
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps(cfg.model_dump(exclude={"cache_dir", "use_cache", "path"}), sort_keys=True).encode())
    return h.hexdigest()[:16]


_CACHE_FILES = ("interactions.parquet", "items.parquet")
_WRITER = ".writer"  # inside a cache entry being written: "host pid" (stale temp dirs of killed writes are removed)


class DamagedCache(Exception):
    """A cache entry that cannot be trusted (truncated, modified, older format); it is rebuilt."""


def _save(ds: Dataset, d: Path) -> None:
    import socket

    (d / _WRITER).write_text(f"{socket.gethostname()} {os.getpid()}")
    uidx = np.repeat(np.arange(ds.n_users), ds.lengths())
    cols = {"user": uidx, "item": ds.seq_items, "order": ds.seq_order}
    if ds.seq_behavior is not None:
        cols["behavior"] = ds.seq_behavior
    pl.DataFrame(cols).write_parquet(d / "interactions.parquet")
    ds.item_text.write_parquet(d / "items.parquet")
    meta = {
        "format": CACHE_FORMAT,
        "checksums": {f: sha256_file(d / f) for f in _CACHE_FILES},
        "name": ds.name,
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "user_ids": ds.user_ids,
        "item_ids": ds.item_ids,
        "has_timestamps": ds.has_timestamps,
        "notes": ds.notes,
        "info": ds.info,
    }
    (d / "meta.json").write_text(json.dumps(meta))
    (d / _WRITER).unlink()


def _load(d: Path) -> Dataset:
    """Read a cache entry; raises :class:`DamagedCache` when any part of it fails its checksum or cannot be read."""
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise DamagedCache(f"meta.json cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or not isinstance(meta.get("checksums"), dict):
        raise DamagedCache("meta.json is incomplete or from an older llmrec (no checksums)")
    for f in _CACHE_FILES:
        want = meta["checksums"].get(f)
        try:
            got = sha256_file(d / f)
        except OSError as e:
            raise DamagedCache(f"{f} cannot be read ({e.strerror or e})") from None
        if got != want:
            raise DamagedCache(f"{f} does not match its checksum in meta.json (truncated or modified)")
    try:
        inter = pl.read_parquet(d / "interactions.parquet")
        counts = np.bincount(inter["user"].to_numpy(), minlength=meta["n_users"])
        ptr = np.zeros(meta["n_users"] + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        ds = Dataset(
            name=meta["name"],
            n_users=meta["n_users"],
            n_items=meta["n_items"],
            user_ptr=ptr,
            seq_items=inter["item"].to_numpy().astype(np.int64),
            seq_order=inter["order"].to_numpy().astype(np.int64),
            seq_behavior=inter["behavior"].to_numpy().astype(str) if "behavior" in inter.columns else None,
            user_ids=meta["user_ids"],
            item_ids=meta["item_ids"],
            item_text=pl.read_parquet(d / "items.parquet"),
            has_timestamps=meta["has_timestamps"],
            notes=meta["notes"],
            info=meta["info"],
        )
    except Exception as e:  # noqa: BLE001 - polars / numpy / KeyError on a damaged entry
        raise DamagedCache(f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if len(ds.user_ids) != ds.n_users or len(ds.item_ids) != ds.n_items or len(counts) != ds.n_users:
        raise DamagedCache("meta.json does not match the parquet files")
    return ds


def _remove_stale_temp_dirs(cdir: Path, max_age_s: float = 3600.0) -> None:
    """Remove temp dirs ``.<entry>.*`` of cache writes that were killed (their writer process is gone)."""
    import shutil
    import socket

    if not cdir.parent.is_dir():
        return
    host = socket.gethostname()
    for t in cdir.parent.glob(f".{cdir.name}.*"):
        if not t.is_dir():
            continue
        stale = False
        try:
            h, pid = (t / _WRITER).read_text().split()
            if h == host:
                try:
                    os.kill(int(pid), 0)
                except ProcessLookupError:
                    stale = True
                except (PermissionError, ValueError):
                    pass
            else:
                stale = time.time() - t.stat().st_mtime > max_age_s
        except (OSError, ValueError):  # no writer file: killed before it was written, or finished -> by age
            try:
                stale = time.time() - t.stat().st_mtime > max_age_s
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(t, ignore_errors=True)


def load_raw_for(cfg: DataConfig):
    from llmrec.data import loaders

    if cfg.name == "generic" or cfg.generic is not None:
        if cfg.generic is None:
            raise DataError("config", "data.name is 'generic' but data.generic (the file description) is missing")
        g = cfg.generic
        return loaders.load_generic(
            g.interactions,
            user_col=g.user_col,
            item_col=g.item_col,
            time_col=g.time_col,
            behavior_col=g.behavior_col,
            sep=g.sep,
            items_path=g.items,
            item_id_col=g.item_id_col,
            text_cols=g.text_cols,
            name=cfg.name if cfg.name != "generic" else Path(g.interactions).stem,
            has_header=g.has_header,
        )
    return loaders.load_raw(cfg.name, cfg.path)


def load_dataset(cfg: DataConfig | str, **overrides) -> Dataset:
    """Load and prepare a dataset, from the parquet cache when possible.

    A cache entry that fails its checksums (a truncated or modified file) is rebuilt, with a warning."""
    if isinstance(cfg, str):
        cfg = DataConfig(name=cfg, **overrides)
    elif overrides:
        cfg = cfg.model_copy(update=overrides)
    t0 = time.perf_counter()
    raw_files = _source_files(cfg)
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    # a missing source file: no cache look-up, the loader reports it (file, what was expected)
    key = _cache_key(raw_files, cfg) if raw_files and all(os.path.isfile(f) for f in raw_files) else None
    cdir = cache_root / "datasets" / f"{cfg.name}-{key}" if key else None
    if cfg.use_cache and cdir is not None and cdir.exists():
        try:
            ds = _load(cdir)
        except DamagedCache as e:
            warn(f"dataset cache entry {cdir} is damaged: {e}; rebuilding it from the source files")
            import shutil

            shutil.rmtree(cdir, ignore_errors=True)
        else:
            ds.info["load_seconds"] = time.perf_counter() - t0
            ds.info["from_cache"] = True
            return ds
    raw = load_raw_for(cfg)
    ds = prepare_raw(raw, cfg)
    if cfg.use_cache:
        key = _cache_key(raw.source_files, cfg)
        cdir = cache_root / "datasets" / f"{cfg.name}-{key}"
        try:
            _remove_stale_temp_dirs(cdir)
            atomic_write_dir(cdir, lambda d: _save(ds, d))
        except OSError as e:
            warn(f"cannot write the dataset cache {cdir} ({e.strerror or e}); continuing without it")
    ds.info["load_seconds"] = time.perf_counter() - t0
    ds.info["from_cache"] = False
    return ds


def _source_files(cfg: DataConfig) -> list[str]:
    """The files a dataset is read from, without parsing them (to look up the cache)."""
    from llmrec.data import loaders

    if cfg.generic is not None:
        files = [cfg.generic.interactions] + ([cfg.generic.items] if cfg.generic.items else [])
        return [str(Path(f).expanduser().resolve()) for f in files]
    try:
        return loaders.source_files(cfg.name, cfg.path)
    except DataError:
        return []
