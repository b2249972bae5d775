"""Raw dataset loaders.

Every loader returns a :class:`RawData` with one interactions frame in a single,
fixed schema (see :class:`RawData`), plus optional item text and user features.
Nothing is filtered, deduplicated or re-indexed here: that is the job of the
preprocessing step, which must be able to trust that ``interactions`` is exactly
what the files say, in file order.

Bad input never produces a deep traceback or a silently wrong frame: it raises
ONE :class:`~llmrec.data.errors.DataError` naming the file, the 1-based line and
what was expected.

Staged datasets (``DATASETS``) are looked up under a data root found by
:func:`resolve_data_root`; a user's own files go through :func:`load_generic`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import polars as pl

from .errors import DataError

__all__ = [
    "RawData",
    "DATASETS",
    "resolve_data_root",
    "source_files",
    "load_raw",
    "load_generic",
    "load_ml_100k",
    "load_ml_1m",
    "load_ml_1m_pairs",
    "load_beauty",
    "load_sports",
    "load_toys",
    "load_yelp",
    "load_mind_sample",
    "load_taobao_sample",
]

INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user": pl.Utf8,
    "item": pl.Utf8,
    "order": pl.Int64,
    "behavior": pl.Utf8,
    "row": pl.Int64,
}


# --------------------------------------------------------------------------- #
# Result type
# --------------------------------------------------------------------------- #
@dataclass(repr=False)
class RawData:
    """A dataset as read from disk, before any filtering or re-indexing.

    ``interactions`` columns:

    * ``user``     Utf8  -- original user id
    * ``item``     Utf8  -- original item id
    * ``order``    Int64 -- unix timestamp (seconds) if ``has_timestamps`` else the
      0-based position within the user's sequence
    * ``behavior`` Utf8  -- behaviour type (e.g. Taobao pv/buy/cart/fav); may be all null
    * ``row``      Int64 -- 0-based row number in file order (stable tie-break)

    The row order of the frame is file order.  ``items`` has a ``item`` column
    plus Utf8 text columns (items without text may be absent or null);
    ``users`` has a ``user`` column plus feature columns, or is ``None``.
    """

    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None
    has_timestamps: bool
    notes: list[str] = field(default_factory=list)
    source_files: list[str] = field(default_factory=list)

    @property
    def text_columns(self) -> list[str]:
        """Text columns of ``items`` (everything except the id column)."""
        return [c for c in self.items.columns if c != "item"]

    def summary(self) -> dict[str, int]:
        """Users / items / interactions counted on the interactions frame."""
        df = self.interactions
        return {
            "users": int(df["user"].n_unique()),
            "items": int(df["item"].n_unique()),
            "interactions": int(df.height),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"RawData(name={self.name!r}, users={s['users']}, items={s['items']}, "
            f"interactions={s['interactions']}, has_timestamps={self.has_timestamps}, "
            f"item_text={self.text_columns}, users_frame={self.users is not None}, "
            f"notes={len(self.notes)})"
        )


# --------------------------------------------------------------------------- #
# Low-level reading helpers (every failure -> DataError with file + line)
# --------------------------------------------------------------------------- #
def _read_bytes(path: Path, what: str) -> bytes:
    """Read a file's bytes, gunzipping if it is gzip data; reject missing/empty files."""
    if not path.exists():
        raise DataError(path, f"file not found; expected {what}")
    if path.is_dir():
        raise DataError(path, f"is a directory; expected a file ({what})")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read file ({e.strerror or e}); expected {what}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(
                path, f"corrupt or truncated gzip data ({e}); expected valid gzip-compressed data ({what})"
            ) from None
    if not raw.strip():
        raise DataError(path, f"file is empty; expected {what}")
    return raw


def _decode(path: Path, raw: bytes, encoding: str, what: str) -> str:
    """Decode bytes strictly; a decode error names the line and the expected encoding."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        bad = raw[e.start : e.end]
        hint = ""
        if encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
            hint = " (the file may be latin-1/cp1252 encoded; re-save it as UTF-8 or pass the right encoding)"
        raise DataError(
            path,
            f"cannot decode byte(s) {bad!r} at byte column {col}: expected {encoding}-encoded text "
            f"({what}){hint}",
            line=line,
        ) from None
    except LookupError:
        raise DataError(path, f"unknown text encoding {encoding!r}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text


def _read_lines(path: Path, what: str, encoding: str = "utf-8") -> list[str]:
    """All lines of a (possibly gzipped) text file, without line terminators.

    A single trailing empty line (final newline) is dropped, so ``lines[i]`` is
    line ``i + 1`` of the file.
    """
    text = _decode(path, _read_bytes(path, what), encoding, what)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _split_fixed(
    path: Path,
    lines: list[str],
    sep: str,
    names: Sequence[str],
    expected: str,
    *,
    skip_lines: int = 0,
) -> tuple[list[pl.Series], pl.Series]:
    """Split every non-blank line into exactly ``len(names)`` fields (vectorised).

    Returns one Utf8 Series per field and the 1-based line number of each row.
    """
    n = len(names)
    s = pl.Series("line", lines[skip_lines:], dtype=pl.Utf8)
    linenos = pl.int_range(skip_lines + 1, skip_lines + 1 + s.len(), eager=True, dtype=pl.Int64)
    keep = s.str.strip_chars() != ""
    if not bool(keep.all()):
        s, linenos = s.filter(keep), linenos.filter(keep)
    if s.len() == 0:
        raise DataError(path, f"file has no data lines; expected {expected}")
    parts = s.str.split(sep, inclusive=False)
    lens = parts.list.len()
    bad = lens != n
    if bool(bad.any()):
        k = int(bad.arg_max())
        raise DataError(
            path,
            f"expected {n} {sep!r}-separated fields ({expected}), got {lens[k]}: {_clip(s[k])!r}",
            line=int(linenos[k]),
        )
    cols = [parts.list.get(j).rename(names[j]) for j in range(n)]
    return cols, linenos


_INT_RE = r"^-?[0-9]+$"
_UINT_RE = r"^[0-9]+$"


def _int_column(
    path: Path,
    values: list[str] | pl.Series,
    linenos: list[int] | None,
    field_name: str,
    expected: str,
    *,
    allow_negative: bool = False,
    line_of: Callable[[int], int | None] | None = None,
) -> pl.Series:
    """Validate that every value is an integer literal and return an Int64 Series."""
    s = values if isinstance(values, pl.Series) else pl.Series(field_name, values, dtype=pl.Utf8)
    ok = s.str.contains(_INT_RE if allow_negative else _UINT_RE).fill_null(False)
    out = s.cast(pl.Int64, strict=False) if bool(ok.all()) else None
    if out is None or out.null_count():
        bad_mask = ~ok if out is None else out.is_null()
        idx = int(bad_mask.arg_max())
        line = linenos[idx] if linenos is not None else (line_of(idx) if line_of else None)
        extra = "" if line is not None else f" (row {idx + 1})"
        raise DataError(path, f"expected {expected}, got {s[idx]!r}{extra}", line=line, field=field_name)
    return out


def _check_ids(path: Path, values: list[str], linenos: list[int], field_name: str, what: str) -> None:
    _int_column(path, values, linenos, field_name, f"an integer {what}")


def _clip(s: str, n: int = 120) -> str:
    return s if len(s) <= n else s[:n] + "..."


def _interactions(
    users: list[str] | pl.Series,
    items: list[str] | pl.Series,
    order: list[int] | pl.Series | None = None,
    behavior: list[str | None] | pl.Series | None = None,
) -> pl.DataFrame:
    """Build the interactions frame in file order.

    ``order=None`` -> 0-based position within each user's sequence (file order).
    """
    df = pl.DataFrame(
        {"user": users, "item": items},
        schema={"user": pl.Utf8, "item": pl.Utf8},
    )
    cols: list[pl.Expr | pl.Series] = []
    if order is None:
        cols.append(pl.int_range(pl.len(), dtype=pl.Int64).over("user").alias("order"))
    else:
        cols.append(pl.Series("order", order, dtype=pl.Int64))
    if behavior is None:
        cols.append(pl.lit(None, dtype=pl.Utf8).alias("behavior"))
    else:
        cols.append(pl.Series("behavior", behavior, dtype=pl.Utf8))
    cols.append(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"))
    return df.with_columns(cols).select(list(INTERACTION_SCHEMA))


def _repeat_note(df: pl.DataFrame) -> str | None:
    """Note on repeated (user, item) pairs inside sequences, which are kept as-is."""
    per_user = df.group_by("user").agg((pl.len() - pl.col("item").n_unique()).alias("r"))
    rep = int(per_user["r"].sum())
    if rep == 0:
        return "no (user, item) pair occurs twice: sequences contain no repeated items"
    users_with = int((per_user["r"] > 0).sum())
    return (
        f"{rep:,} interactions repeat an item already seen earlier in the same user's sequence "
        f"({users_with:,} users affected); kept as-is (the loader never deduplicates)"
    )


def _finish(
    name: str,
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    users: pl.DataFrame | None,
    has_timestamps: bool,
    notes: list[str],
    files: Iterable[Path],
) -> RawData:
    rep = _repeat_note(interactions)
    if rep:
        notes = [*notes, rep]
    return RawData(
        name=name,
        interactions=interactions,
        items=items,
        users=users,
        has_timestamps=has_timestamps,
        notes=notes,
        source_files=[str(Path(f).resolve()) for f in files],
    )


def _dataset_dir(root: Path, folder: str, probe: str) -> Path:
    """Accept either the data root (containing ``folder``) or the dataset folder itself."""
    root = Path(root)
    if (root / folder / probe).exists():
        return root / folder
    if (root / probe).exists():
        return root
    return root / folder  # the missing-file error will name the expected path


# name -> (folder under the data root, files read; the first one locates the folder)
_SPECS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ml-100k": ("ml-100k", ("u.data.gz", "u.item", "u.genre", "u.user")),
    "ml-1m": ("ml-1m", ("ratings.users-0001-2999.dat.gz", "movies.dat", "users.dat")),
    "ml-1m-pairs": ("ml-1m", ("ratings.user-movie-pairs.parquet", "movies.dat", "users.dat")),
    "beauty": ("amazon-beauty", ("p5_llm-recsys-id/sequential_data.txt.gz", "item_titles.tsv.gz")),
    "sports": ("amazon-sports", ("p5_llm-recsys-id/sequential_data.txt.gz",)),
    "toys": ("amazon-toys", ("p5_rdrec/sequential.txt.gz",)),
    "yelp": ("yelp-p5", ("p5_llm-recsys-id/sequential_data.txt.gz", "p5_llm-recsys-id/closed_categories.json.gz")),
    "mind-sample": ("mind-small-sample", ("behaviors.tsv.gz", "news.tsv.gz")),
    "taobao-sample": ("taobao-userbehavior-sample", ("UserBehavior.csv",)),
}


def _files(name: str, root: str | Path) -> list[Path]:
    folder, rels = _SPECS[name]
    d = _dataset_dir(Path(root), folder, rels[0])
    return [d / r for r in rels]


def _items_only_ids(interactions: pl.DataFrame) -> pl.DataFrame:
    """Item frame without text: the distinct item ids, in numeric order when possible."""
    items = interactions.select(pl.col("item").unique())
    key = pl.col("item").cast(pl.Int64, strict=False)
    return items.sort(key, pl.col("item"), nulls_last=True)


# --------------------------------------------------------------------------- #
# Data root
# --------------------------------------------------------------------------- #
def resolve_data_root(path: str | Path | None = None) -> Path:
    """Find the directory holding the staged datasets.

    Order: explicit ``path``; env var ``LLMREC_DATA``; ``../shared/datasets``
    relative to the current working directory; ``<repo>/../shared/datasets``
    found by walking up from this file.  Raises :class:`DataError` if none exists.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise DataError(p, "data root not found; expected a directory holding the datasets")
        return p.resolve()
    env = os.environ.get("LLMREC_DATA")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DataError(
                p, "data root from environment variable LLMREC_DATA does not exist; expected a directory"
            )
        return p.resolve()
    tried: list[Path] = []
    cand = Path.cwd() / ".." / "shared" / "datasets"
    tried.append(cand)
    if cand.is_dir():
        return cand.resolve()
    for parent in Path(__file__).resolve().parents:
        cand = parent / "shared" / "datasets"
        tried.append(cand)
        if cand.is_dir():
            return cand.resolve()
    raise DataError(
        None,
        "no dataset root found: pass root=..., or set LLMREC_DATA=/path/to/datasets "
        f"(looked for: {', '.join(str(t) for t in tried[:3])}, ...)",
    )


# --------------------------------------------------------------------------- #
# P5-style sequence files: `user item item ...`
# --------------------------------------------------------------------------- #
_P5_EXPECTED = "'user_id item_id [item_id ...]': an integer user id followed by integer item ids, space-separated"


def _parse_p5(path: Path) -> pl.DataFrame:
    lines = _read_lines(path, "a P5 sequence file (" + _P5_EXPECTED + ")")
    users: list[str] = []
    items: list[str] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(path, f"expected {_P5_EXPECTED}; got only {len(parts)} field: {_clip(line)!r}", line=i)
        joined = "".join(parts)
        if not (joined.isdigit() and joined.isascii()):
            k = next(k for k, t in enumerate(parts) if not (t.isdigit() and t.isascii()))
            what = "user id" if k == 0 else f"item id (field {k + 1})"
            raise DataError(
                path,
                f"expected an integer {what} in {_P5_EXPECTED}, got {_clip(parts[k], 40)!r}",
                line=i,
                field="user" if k == 0 else "item",
            )
        u = parts[0]
        if u in seen:
            raise DataError(
                path,
                f"user {u} already has a sequence on line {seen[u]}; expected one line per user",
                line=i,
                field="user",
            )
        seen[u] = i
        users.extend([u] * (len(parts) - 1))
        items.extend(parts[1:])
    if not users:
        raise DataError(path, f"file has no sequences; expected lines {_P5_EXPECTED}")
    return _interactions(users, items)


_P5_NOTE = (
    "no timestamps: order = 0-based position in the user's P5 sequence "
    "(P5 sequences are chronological)"
)


def _load_p5(name: str, root: str | Path) -> tuple[list[Path], pl.DataFrame, list[str]]:
    files = _files(name, root)
    return files, _parse_p5(files[0]), [_P5_NOTE]


def load_beauty(root: str | Path) -> RawData:
    files, df, notes = _load_p5("beauty", root)
    tpath = files[1]
    lines = _read_lines(tpath, "a TSV with header 'p5_item_id<TAB>asin<TAB>title'")
    header = lines[0].split("\t")
    if header != ["p5_item_id", "asin", "title"]:
        raise DataError(tpath, f"expected header 'p5_item_id<TAB>asin<TAB>title', got {_clip(lines[0])!r}", line=1)
    (ids, asins, titles), linenos = _split_fixed(
        tpath, lines, "\t", header, "p5_item_id, asin, title", skip_lines=1
    )
    _check_ids(tpath, ids, linenos, "p5_item_id", "P5 item id")
    items = pl.DataFrame(
        {"item": ids, "asin": asins, "title": titles},
        schema={"item": pl.Utf8, "asin": pl.Utf8, "title": pl.Utf8},
    ).with_columns(pl.when(pl.col("title").str.strip_chars() == "").then(None).otherwise(pl.col("title")).alias("title"))
    _check_unique(tpath, items["item"], linenos, "p5_item_id")
    n_missing = items["title"].null_count()
    notes.append(
        f"item ids are the P5 integer ids; items.asin is the Amazon ASIN; {items.height - n_missing:,} items have a title"
        + (f" ({n_missing} empty titles set to null)" if n_missing else "")
    )
    notes.append("titles come from the 2014 metadata via a regex extraction (close to, not byte-identical with, raw metadata)")
    return _finish("beauty", df, items, None, False, notes, files)


def load_sports(root: str | Path) -> RawData:
    files, df, notes = _load_p5("sports", root)
    notes.append("no item text is available for this dataset (items frame has only ids)")
    return _finish("sports", df, _items_only_ids(df), None, False, notes, files)


def load_toys(root: str | Path) -> RawData:
    files, df, notes = _load_p5("toys", root)
    notes.append("no item text is available for this dataset (items frame has only ids)")
    return _finish("toys", df, _items_only_ids(df), None, False, notes, files)


def load_yelp(root: str | Path) -> RawData:
    files, df, notes = _load_p5("yelp", root)
    cpath = files[1]
    what = "a JSON object mapping item idx -> list of category strings"
    text = _decode(cpath, _read_bytes(cpath, what), "utf-8", what)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(cpath, f"invalid JSON ({e.msg} at column {e.colno}); expected {what}", line=e.lineno) from None
    if not isinstance(obj, dict):
        raise DataError(cpath, f"expected {what}, got a JSON {type(obj).__name__}")
    ids: list[str] = []
    cats: list[str | None] = []
    for k, v in obj.items():
        if not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise DataError(cpath, f"expected a list of category strings for item {k!r}, got {_clip(repr(v), 60)}")
        if not (k.isdigit() and k.isascii()):
            raise DataError(cpath, f"expected integer item idx keys, got {k!r}")
        ids.append(k)
        cats.append(", ".join(v) if v else None)
    items = pl.DataFrame({"item": ids, "categories": cats}, schema={"item": pl.Utf8, "categories": pl.Utf8})
    items = items.sort(pl.col("item").cast(pl.Int64))
    notes.append("item text = Yelp business categories joined with ', ' (no business names or reviews)")
    notes.append(
        "Yelp sequences contain repeat visits to the same business; they are kept (not deduplicated)"
    )
    return _finish("yelp", df, items, None, False, notes, files)


def _check_unique(path: Path, ids: pl.Series, linenos: list[int], field_name: str) -> None:
    dup = ids.is_duplicated()
    if dup.any():
        idx = int(dup.arg_max())
        first = ids[idx]
        later = [linenos[j] for j in (ids == first).arg_true().to_list()]
        raise DataError(
            path,
            f"duplicate id {first!r} (also on line {later[1]}); expected each id once",
            line=later[0],
            field=field_name,
        )


# --------------------------------------------------------------------------- #
# MovieLens
# --------------------------------------------------------------------------- #
def _read_genre_names(path: Path) -> list[str]:
    lines = _read_lines(path, "u.genre ('name|index' lines)", encoding="latin-1")
    (names, idx), linenos = _split_fixed(path, lines, "|", ["name", "index"], "genre name|index")
    idx_s = _int_column(path, idx, linenos, "index", "an integer genre index")
    if idx_s.to_list() != list(range(len(names))):
        raise DataError(path, "expected genre indices 0, 1, 2, ... in order")
    return names.to_list()


def load_ml_100k(root: str | Path) -> RawData:
    upath, ipath, gpath, uspath = _files("ml-100k", root)
    lines = _read_lines(upath, "tab-separated 'user item rating timestamp' lines")
    (u, i, _r, ts), linenos = _split_fixed(
        upath, lines, "\t", ["user", "item", "rating", "timestamp"], "user, item, rating, unix timestamp"
    )
    _check_ids(upath, u, linenos, "user", "user id")
    _check_ids(upath, i, linenos, "item", "item id")
    order = _int_column(upath, ts, linenos, "timestamp", "an integer unix timestamp", allow_negative=True)
    df = _interactions(u, i, order)

    genres = _read_genre_names(gpath)
    names = ["item", "title", "release_date", "video_release_date", "imdb_url", *genres]
    lines = _read_lines(ipath, "'|'-separated movie lines", encoding="latin-1")
    cols, linenos = _split_fixed(
        ipath, lines, "|", names,
        f"movie id|title|release date|video release date|IMDb URL|{len(genres)} genre flags",
    )
    _check_ids(ipath, cols[0], linenos, "item", "movie id")
    flags = [c.to_list() for c in cols[5:]]
    for g, col in zip(genres, flags):
        bad = next((k for k, v in enumerate(col) if v not in ("0", "1")), None)
        if bad is not None:
            raise DataError(ipath, f"expected a 0/1 genre flag, got {col[bad]!r}", line=linenos[bad], field=g)
    genre_text = [
        "|".join(g for g, f in zip(genres, row) if f == "1") or None for row in zip(*flags)
    ]
    items = pl.DataFrame(
        {"item": cols[0], "title": cols[1], "release_date": cols[2], "genres": genre_text},
        schema={"item": pl.Utf8, "title": pl.Utf8, "release_date": pl.Utf8, "genres": pl.Utf8},
    ).with_columns(
        pl.when(pl.col("release_date") == "").then(None).otherwise(pl.col("release_date")).alias("release_date")
    )
    _check_unique(ipath, items["item"], linenos, "item")

    lines = _read_lines(uspath, "'|'-separated 'user|age|gender|occupation|zip' lines", encoding="latin-1")
    (uid, age, gender, occ, zipc), linenos = _split_fixed(
        uspath, lines, "|", ["user", "age", "gender", "occupation", "zip"], "user id|age|gender|occupation|zip code"
    )
    _check_ids(uspath, uid, linenos, "user", "user id")
    users = pl.DataFrame(
        {"user": uid, "age": _int_column(uspath, age, linenos, "age", "an integer age"),
         "gender": gender, "occupation": occ, "zip": zipc},
        schema={"user": pl.Utf8, "age": pl.Int64, "gender": pl.Utf8, "occupation": pl.Utf8, "zip": pl.Utf8},
    )
    notes = [
        "order = unix timestamp (seconds); many ratings share the same second, ties are broken by file row",
        "ratings (1-5) are not kept: every rating counts as an interaction",
    ]
    return _finish("ml-100k", df, items, users, True, notes, [upath, ipath, gpath, uspath])


def _ml1m_side(mpath: Path, upath: Path) -> tuple[pl.DataFrame, pl.DataFrame, list[Path]]:
    lines = _read_lines(mpath, "'MovieID::Title::Genres' lines (latin-1)", encoding="latin-1")
    (mid, title, genres), linenos = _split_fixed(mpath, lines, "::", ["item", "title", "genres"], "MovieID::Title::Genres")
    _check_ids(mpath, mid, linenos, "item", "movie id")
    items = pl.DataFrame(
        {"item": mid, "title": title, "genres": genres},
        schema={"item": pl.Utf8, "title": pl.Utf8, "genres": pl.Utf8},
    ).with_columns(pl.when(pl.col("genres") == "").then(None).otherwise(pl.col("genres")).alias("genres"))
    _check_unique(mpath, items["item"], linenos, "item")

    lines = _read_lines(upath, "'UserID::Gender::Age::Occupation::Zip-code' lines", encoding="latin-1")
    (uid, gender, age, occ, zipc), linenos = _split_fixed(
        upath, lines, "::", ["user", "gender", "age", "occupation", "zip"], "UserID::Gender::Age::Occupation::Zip-code"
    )
    _check_ids(upath, uid, linenos, "user", "user id")
    users = pl.DataFrame(
        {
            "user": uid,
            "gender": gender,
            "age": _int_column(upath, age, linenos, "age", "an integer age-group code"),
            "occupation": _int_column(upath, occ, linenos, "occupation", "an integer occupation code"),
            "zip": zipc,
        },
        schema={"user": pl.Utf8, "gender": pl.Utf8, "age": pl.Int64, "occupation": pl.Int64, "zip": pl.Utf8},
    )
    return items, users, [mpath, upath]


def load_ml_1m(root: str | Path) -> RawData:
    rpath, mpath, upath = _files("ml-1m", root)
    lines = _read_lines(rpath, "'UserID::MovieID::Rating::Timestamp' lines")
    (u, i, _r, ts), linenos = _split_fixed(
        rpath, lines, "::", ["user", "item", "rating", "timestamp"], "UserID::MovieID::Rating::Timestamp"
    )
    _check_ids(rpath, u, linenos, "user", "user id")
    _check_ids(rpath, i, linenos, "item", "movie id")
    order = _int_column(rpath, ts, linenos, "timestamp", "an integer unix timestamp", allow_negative=True)
    df = _interactions(u, i, order)
    items, users, side = _ml1m_side(mpath, upath)
    n_users = df["user"].n_unique()
    notes = [
        f"PARTIAL ML-1M: timestamps are only available for users 1-2999 (ratings.users-0001-2999.dat.gz, "
        f"an exact prefix of ratings.dat), so only these {n_users:,} users ({df.height:,} of 1,000,209 ratings) "
        "are loaded; use 'ml-1m-pairs' for all 6,040 users without timestamps",
        "order = unix timestamp (seconds); many ratings share the same second, ties are broken by file row",
        "ratings (1-5) are not kept: every rating counts as an interaction",
        f"items/users frames hold the full catalogue ({items.height:,} movies, {users.height:,} users), "
        "including movies/users without loaded interactions; users.age/occupation are ML-1M codes (see README)",
    ]
    return _finish("ml-1m", df, items, users, True, notes, [rpath, *side])


def load_ml_1m_pairs(root: str | Path) -> RawData:
    ppath, mpath, upath = _files("ml-1m-pairs", root)
    tab = _read_parquet(ppath, "a parquet file with string columns userID, movieID")
    _require_columns(ppath, tab, ["userID", "movieID"])
    u = tab["userID"].cast(pl.Utf8)
    i = tab["movieID"].cast(pl.Utf8)
    for s, f in ((u, "userID"), (i, "movieID")):
        _int_column(ppath, s, None, f, "an integer id")
    df = _interactions(u, i)
    items, users, side = _ml1m_side(mpath, upath)
    notes = [
        "all 1,000,209 ML-1M (user, movie) pairs but NO timestamps or ratings: order = position of the "
        "pair within the user's rows in the original ratings.dat order",
        "ratings.dat is grouped by user but is NOT chronological within a user: do not treat this order "
        "as time order (use 'ml-1m' for timestamped sequences of users 1-2999)",
    ]
    return _finish("ml-1m-pairs", df, items, users, False, notes, [ppath, *side])


def _read_parquet(path: Path, what: str) -> pl.DataFrame:
    if not path.exists():
        raise DataError(path, f"file not found; expected {what}")
    if path.is_dir():
        raise DataError(path, f"is a directory; expected a file ({what})")
    if path.stat().st_size == 0:
        raise DataError(path, f"file is empty; expected {what}")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars/pyarrow raise various types for corrupt files
        raise DataError(path, f"cannot read as parquet ({_clip(str(e).splitlines()[0] if str(e) else type(e).__name__)}); expected {what}") from None
    if df.height == 0:
        raise DataError(path, f"parquet file has no rows; expected {what}")
    return df


def _require_columns(path: Path, df: pl.DataFrame, needed: Iterable[str | None], hint: str = "") -> None:
    for c in needed:
        if c is not None and c not in df.columns:
            raise DataError(
                path,
                f"missing column {c!r}; columns found: {', '.join(repr(x) for x in df.columns)}{hint}",
                field=c,
            )


# --------------------------------------------------------------------------- #
# MIND (small sample)
# --------------------------------------------------------------------------- #
_MIND_TIME_FMT = "%m/%d/%Y %I:%M:%S %p"


def load_mind_sample(root: str | Path) -> RawData:
    bpath, npath = _files("mind-sample", root)
    lines = _read_lines(bpath, "MIND behaviors.tsv lines")
    (imp, uid, times, hist, imps), linenos = _split_fixed(
        bpath, lines, "\t", ["impression_id", "user", "time", "history", "impressions"],
        "ImpressionID, UserID, Time, History, Impressions",
    )
    uid, times, hist, imps = uid.to_list(), times.to_list(), hist.to_list(), imps.to_list()
    parsed_times: list[datetime] = []
    cache: dict[str, datetime] = {}
    for k, t in enumerate(times):
        dt = cache.get(t)
        if dt is None:
            try:
                dt = datetime.strptime(t, _MIND_TIME_FMT)
            except ValueError:
                raise DataError(
                    bpath, f"expected a time like '11/12/2019 2:14:46 PM', got {_clip(t, 40)!r}",
                    line=linenos[k], field="Time",
                ) from None
            cache[t] = dt
        parsed_times.append(dt)
    for k, u in enumerate(uid):
        if not u:
            raise DataError(bpath, "expected a non-empty UserID", line=linenos[k], field="UserID")

    # Per user: rows in time order (ties -> file order).
    by_user: dict[str, list[int]] = {}
    for k, u in enumerate(uid):
        by_user.setdefault(u, []).append(k)
    users_out: list[str] = []
    items_out: list[str] = []
    n_extra_hist = 0
    # iterate users in order of first appearance in the file, so output order is deterministic
    for u, ks in by_user.items():
        ks = sorted(ks, key=lambda k: (parsed_times[k], k))
        seq: list[str] = list(hist[ks[0]].split())
        hist_set = set(seq)
        for k in ks:
            for n in hist[k].split():
                if n not in hist_set:  # history grew between impressions: add once, before this impression's clicks
                    seq.append(n)
                    hist_set.add(n)
                    n_extra_hist += 1
            for tok in imps[k].split():
                nid, sep, label = tok.rpartition("-")
                if not sep or not nid or label not in ("0", "1"):
                    raise DataError(
                        bpath, f"expected impression entries like 'N1234-1' (news id, '-', 0/1 click label), got {_clip(tok, 40)!r}",
                        line=linenos[k], field="Impressions",
                    )
                if label == "1":
                    seq.append(nid)
        users_out.extend([u] * len(seq))
        items_out.extend(seq)
    if not items_out:
        raise DataError(bpath, "no clicks found in History or Impressions; expected at least one clicked news id")
    df = _interactions(users_out, items_out)

    nlines = _read_lines(npath, "MIND news.tsv lines")
    ncols, nlinenos = _split_fixed(
        npath, nlines, "\t",
        ["item", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities"],
        "NewsID, Category, SubCategory, Title, Abstract, URL, TitleEntities, AbstractEntities",
    )
    items = pl.DataFrame(
        {"item": ncols[0], "title": ncols[3], "category": ncols[1], "subcategory": ncols[2], "abstract": ncols[4]},
        schema={c: pl.Utf8 for c in ("item", "title", "category", "subcategory", "abstract")},
    ).with_columns(
        [pl.when(pl.col(c).str.strip_chars() == "").then(None).otherwise(pl.col(c)).alias(c)
         for c in ("title", "category", "subcategory", "abstract")]
    )
    _check_unique(npath, items["item"], nlinenos, "NewsID")
    with_text = df["item"].is_in(items["item"].implode()).sum()
    n_multi = sum(1 for ks in by_user.values() if len(ks) > 1)
    notes = [
        "sequence per user = the History clicks of the user's earliest impression row (in listed order), then "
        "the clicked (label 1) news of every impression row of that user in time order (ties by file row; "
        "within a row in listed order); history ids that appear only in a later row's History are added once, "
        f"just before that row's clicks ({n_extra_hist} such ids); "
        f"{n_multi:,} of {len(by_user):,} users have several impression rows",
        "History has no timestamps, so has_timestamps=False and order = position in the sequence",
        "History lists may contain the same news id twice and a clicked impression may repeat a history id; "
        "these repeats are kept",
        f"news.tsv and behaviors.tsv were sampled independently: only {int(with_text):,} of {df.height:,} "
        f"interactions ({with_text / df.height:.1%}) refer to a news id with text",
        "behavior is null (all interactions are clicks); non-clicked impressions are not kept",
    ]
    return _finish("mind-sample", df, items, None, False, notes, [bpath, npath])


# --------------------------------------------------------------------------- #
# Taobao UserBehavior sample
# --------------------------------------------------------------------------- #
_TAOBAO_BEHAVIORS = ("pv", "buy", "cart", "fav")


def load_taobao_sample(root: str | Path) -> RawData:
    (path,) = _files("taobao-sample", root)
    lines = _read_lines(path, "headerless CSV lines 'user_id,item_id,category_id,behavior_type,timestamp'")
    (u, i, cat, beh, ts), linenos = _split_fixed(
        path, lines, ",", ["user", "item", "category", "behavior", "timestamp"],
        "user_id,item_id,category_id,behavior_type,timestamp",
    )
    _check_ids(path, u, linenos, "user", "user id")
    _check_ids(path, i, linenos, "item", "item id")
    _check_ids(path, cat, linenos, "category", "category id")
    bad_beh = ~beh.is_in(list(_TAOBAO_BEHAVIORS))
    if bool(bad_beh.any()):
        k = int(bad_beh.arg_max())
        raise DataError(
            path, f"expected a behavior type in {{{', '.join(_TAOBAO_BEHAVIORS)}}}, got {_clip(str(beh[k]), 40)!r}",
            line=linenos[k], field="behavior",
        )
    order = _int_column(path, ts, linenos, "timestamp", "an integer unix timestamp", allow_negative=True)
    df = _interactions(u, i, order, beh)
    cat_df = pl.DataFrame({"item": i, "category": cat}, schema={"item": pl.Utf8, "category": pl.Utf8})
    n_conflict = cat_df.group_by("item").agg(pl.col("category").n_unique().alias("n")).filter(pl.col("n") > 1).height
    items = cat_df.unique(subset="item", keep="first", maintain_order=True)
    items = items.sort(pl.col("item").cast(pl.Int64))
    notes = [
        "order = unix timestamp (seconds); ties (same user, same second) are broken by file row",
        "behavior in {pv, buy, cart, fav}; items.category is the Taobao category id (a number, not a name)",
    ]
    if n_conflict:
        notes.append(f"{n_conflict} items appear with more than one category id; the first one in the file is kept")
    return _finish("taobao-sample", df, items, None, True, notes, [path])


# --------------------------------------------------------------------------- #
# Generic loader for a user's own files
# --------------------------------------------------------------------------- #
def _infer_format(path: Path, sep: str | None) -> tuple[str, str | None]:
    """Return ('parquet', None) or ('text', separator)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".parquet", ".pq") and sep is None:
        return "parquet", None
    if sep is not None:
        if not isinstance(sep, str) or len(sep) != 1:
            raise DataError(path, f"sep must be a single character, got {sep!r}")
        return "text", sep
    if ext == ".csv":
        return "text", ","
    if ext in (".tsv", ".txt", ".tab"):
        return "text", "\t"
    raise DataError(
        path,
        f"cannot infer the format from the extension {ext or '(none)'!r}; expected .csv, .tsv, .txt, .parquet "
        "(optionally .gz), or pass sep=','/'\\t'",
    )


@dataclass
class _Table:
    path: Path
    df: pl.DataFrame
    kind: str  # "parquet" | "text"
    text: str | None = None
    sep: str | None = None
    has_header: bool = True

    def line_of(self, idx: int) -> int | None:
        """1-based physical line of data record ``idx`` (None for parquet)."""
        if self.kind != "text" or self.text is None:
            return None
        reader = csv.reader(io.StringIO(self.text), delimiter=self.sep or ",", **_csv_quoting(self.sep))
        target = idx + (1 if self.has_header else 0)
        k = -1
        for rec in reader:
            if not rec:  # blank lines are skipped by polars too
                continue
            k += 1
            if k == target:
                return reader.line_num
        return None

    def where(self, idx: int) -> tuple[int | None, str]:
        line = self.line_of(idx)
        return line, ("" if line is not None else f" (row {idx + 1})")


def _csv_quoting(sep: str | None) -> dict:
    return {} if sep == "," else {"quoting": csv.QUOTE_NONE}


def _read_table(path: Path, sep: str | None, has_header: bool, encoding: str, what: str) -> _Table:
    kind, sep = _infer_format(path, sep)
    if kind == "parquet":
        return _Table(path, _read_parquet(path, what), "parquet")
    raw = _read_bytes(path, what)
    text = _decode(path, raw, encoding, what)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if has_header and len([ln for ln in lines if ln.strip()]) < 2:
        raise DataError(path, f"file has a header line but no data lines; expected {what}")
    quote = '"' if sep == "," else None
    first = next(k for k, ln in enumerate(lines) if ln.strip())
    # Field-count check (fast, vectorised) when no quoting can hide separators.
    if '"' not in text or quote is None:
        n_expected = lines[first].count(sep) + 1
        counts = pl.Series(lines).str.count_matches(sep, literal=True)
        blank = pl.Series(lines).str.strip_chars() == ""
        bad = (counts != n_expected - 1) & ~blank
        if bad.any():
            k = int(bad.arg_max())
            raise DataError(
                path,
                f"expected {n_expected} {sep!r}-separated fields (as on line {first + 1}), got {int(counts[k]) + 1}: "
                f"{_clip(lines[k])!r}",
                line=k + 1,
            )
    try:
        df = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            separator=sep,
            has_header=has_header,
            infer_schema=False,
            quote_char=quote,
        )
        if not has_header:
            df.columns = [str(c) for c in range(df.width)]
    except Exception as e:  # noqa: BLE001 - polars raises several types; we re-locate the line ourselves
        line = _first_ragged_line(text, sep, has_header)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(path, f"cannot parse as {sep!r}-separated text ({_clip(msg)}); expected {what}", line=line) from None
    if df.height == 0:
        raise DataError(path, f"no data rows; expected {what}")
    return _Table(path, df, "text", text=text, sep=sep, has_header=has_header)


def _first_ragged_line(text: str, sep: str, has_header: bool) -> int | None:
    reader = csv.reader(io.StringIO(text), delimiter=sep, **_csv_quoting(sep))
    n = None
    for rec in reader:
        if not rec:
            continue
        if n is None:
            n = len(rec)
        elif len(rec) != n:
            return reader.line_num
    return None


def _col_name(c: str | int | None, has_header: bool) -> str | None:
    if c is None:
        return None
    if isinstance(c, int):
        return str(c)
    return c


def _looks_iso(st: pl.Series) -> bool:
    """True when the column's first non-empty value (file order) looks like an ISO-8601 date."""
    first = st.drop_nulls()
    return bool(first.len()) and bool(first.head(1).str.contains(r"^-?[0-9]{4}-[0-9]{2}").all())


def _parse_iso(value: str) -> int:
    v = value.strip()
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return math.floor(dt.timestamp())


def _time_to_unix(table: _Table, col: str) -> tuple[pl.Series, list[str]]:
    """Convert a time column to Int64 unix seconds. Returns (series, notes)."""
    s = table.df[col]
    path = table.path
    notes: list[str] = []
    if s.null_count():
        idx = int(s.is_null().arg_max())
        line, extra = table.where(idx)
        raise DataError(path, f"expected a timestamp, got an empty value{extra}", line=line, field=col)
    dt = s.dtype
    if dt.is_integer():
        out = s.cast(pl.Int64)
    elif dt.is_float():
        if not s.is_finite().all():
            idx = int((~s.is_finite()).arg_max())
            line, extra = table.where(idx)
            raise DataError(path, f"expected a finite unix timestamp, got {s[idx]!r}{extra}", line=line, field=col)
        out = s.floor().cast(pl.Int64)
        notes.append(f"time column {col!r} has fractional seconds; floored to whole seconds (ties broken by file row)")
    elif isinstance(dt, pl.Datetime):
        out = s.dt.epoch("s").cast(pl.Int64)
    elif dt == pl.Date:
        out = s.cast(pl.Datetime("ms")).dt.epoch("s").cast(pl.Int64)
    elif dt == pl.Utf8:
        st = s.str.strip_chars()
        is_int = st.str.contains(r"^-?[0-9]+$")
        if bool(is_int.all()):
            out = st.cast(pl.Int64, strict=False)
            if out.null_count():
                idx = int(out.is_null().arg_max())
                line, extra = table.where(idx)
                raise DataError(path, f"integer timestamp out of range: {s[idx]!r}{extra}", line=line, field=col)
        elif bool(st.str.contains(r"^-?[0-9]+(\.[0-9]*)?$").all()):  # some with fractional seconds
            out = st.cast(pl.Float64).floor().cast(pl.Int64)
            notes.append(f"time column {col!r} has fractional seconds; floored to whole seconds (ties broken by file row)")
        elif bool(st.str.contains(r"^-?[0-9]+(\.[0-9]*)?$").fill_null(False).any()) and not _looks_iso(st):
            # a numeric column with some non-numeric values: report the first one in file order
            idx = int((~st.str.contains(r"^-?[0-9]+(\.[0-9]*)?$").fill_null(False)).arg_max())
            line, extra = table.where(idx)
            raise DataError(
                path, f"expected a unix timestamp (seconds) like the other values of this column, got "
                f"{_clip(str(s[idx]), 40)!r}{extra}", line=line, field=col,
            )
        else:
            uniq = st.unique(maintain_order=True).to_list()  # file order: the first bad value is reported
            mapping: dict[str, int] = {}
            for v in uniq:
                try:
                    if v.lstrip("-").isdigit():  # a bare number among ISO datetimes is not a date
                        raise ValueError(v)
                    mapping[v] = _parse_iso(v)
                except (ValueError, OverflowError, OSError):
                    idx = int((st == v).arg_max())
                    line, extra = table.where(idx)
                    raise DataError(
                        path,
                        f"expected an integer unix timestamp (seconds) or an ISO-8601 datetime string "
                        f"(e.g. '2019-11-12T14:14:46Z'), got {_clip(str(s[idx]), 40)!r}{extra}",
                        line=line, field=col,
                    ) from None
            out = st.replace_strict(mapping, return_dtype=pl.Int64)
            notes.append(f"time column {col!r} parsed as ISO-8601 datetimes; naive values are taken as UTC")
    else:
        raise DataError(path, f"expected integer unix timestamps or ISO-8601 datetimes, got column type {dt}", field=col)
    if out.len() and int(out.abs().max()) > 100_000_000_000:
        notes.append(
            f"time column {col!r} has values above 1e11: they look like milliseconds, not seconds "
            "(order is still correct; time-gap thresholds must be scaled)"
        )
    return out.rename("order"), notes


def load_generic(
    interactions_path: str | Path,
    *,
    user_col: str | int = "user",
    item_col: str | int = "item",
    time_col: str | int | None = "timestamp",
    behavior_col: str | int | None = None,
    sep: str | None = None,
    items_path: str | Path | None = None,
    item_id_col: str | int = "item",
    text_cols: Sequence[str | int] | None = None,
    name: str = "custom",
    has_header: bool = True,
    encoding: str = "utf-8",
) -> RawData:
    """Load a user's own interaction file (CSV/TSV/parquet, optionally ``.gz``).

    * ``sep=None`` infers the format from the extension: ``.csv`` -> ``,``,
      ``.tsv``/``.txt`` -> tab (no quoting), ``.parquet`` -> parquet.
    * ``time_col`` may hold integer unix seconds or ISO-8601 datetime strings
      (converted to unix seconds, naive = UTC); ``time_col=None`` means no
      timestamps: order = position of the row among the user's rows in file order.
    * ``has_header=False``: columns are addressed by 0-based position
      (``user_col=0, item_col=1, time_col=2``).
    * ``items_path`` (optional): a table with ``item_id_col`` and text columns
      (``text_cols``, default: all other columns), cast to Utf8.
    """
    ipath = Path(interactions_path).expanduser()
    what = "an interactions table with user, item" + (", time" if time_col is not None else "") + " columns"
    table = _read_table(ipath, sep, has_header, encoding, what)
    ucol, icol = _col_name(user_col, has_header), _col_name(item_col, has_header)
    tcol, bcol = _col_name(time_col, has_header), _col_name(behavior_col, has_header)
    hint = ""
    if tcol is not None and tcol not in table.df.columns:
        hint = " (pass time_col=None if the data has no timestamps; order then = position in file per user)"
    if not has_header:
        hint += " (has_header=False: address columns by 0-based position, e.g. user_col=0)"
    _require_columns(ipath, table.df, [ucol, icol, tcol, bcol], hint)
    chosen = [c for c in (ucol, icol, tcol, bcol) if c is not None]
    if len(set(chosen)) != len(chosen):
        raise DataError(ipath, f"the same column is used for several roles: {chosen}")

    def ids(col: str) -> pl.Series:
        s = table.df[col]
        if s.dtype != pl.Utf8:
            s = s.cast(pl.Utf8)
        s = s.str.strip_chars()  # " 7" and "7" are the same id
        empty = s.is_null() | (s.str.strip_chars() == "")
        if bool(empty.any()):
            idx = int(empty.arg_max())
            line, extra = table.where(idx)
            raise DataError(ipath, f"expected a non-empty id, got an empty value{extra}", line=line, field=col)
        return s

    users = ids(ucol)
    items = ids(icol)
    notes: list[str] = []
    if tcol is not None:
        order, tnotes = _time_to_unix(table, tcol)
        notes += ["order = unix timestamp (seconds) from column " + repr(tcol) + "; ties broken by file row", *tnotes]
    else:
        order = None
        notes.append("no time column: order = position of the row among the user's rows, in file order")
    beh = None
    if bcol is not None:
        beh = table.df[bcol].cast(pl.Utf8)
    df = _interactions(users, items, order, beh)

    files = [ipath]
    if items_path is not None:
        ip = Path(items_path).expanduser()
        it = _read_table(ip, None if sep is None or _infer_format(ip, None)[0] == "parquet" else sep,
                         has_header, encoding, "an items table with an item id column and text columns")
        idc = _col_name(item_id_col, has_header)
        tcols = [_col_name(c, has_header) for c in text_cols] if text_cols is not None else [
            c for c in it.df.columns if c != idc
        ]
        _require_columns(ip, it.df, [idc, *tcols])
        sel = it.df.select([pl.col(idc).cast(pl.Utf8).str.strip_chars().alias("item"), *[pl.col(c).cast(pl.Utf8) for c in tcols]])
        if sel["item"].null_count():
            idx = int(sel["item"].is_null().arg_max())
            line, extra = it.where(idx)
            raise DataError(ip, f"expected a non-empty item id, got an empty value{extra}", line=line, field=idc)
        n_dup = sel.height - sel["item"].n_unique()
        if n_dup:
            sel = sel.unique(subset="item", keep="first", maintain_order=True)
            notes.append(f"{n_dup} duplicate item ids in {ip.name}: the first row of each is kept")
        if "item" in tcols:
            raise DataError(ip, "a text column may not be named 'item' (reserved for the id)", field="item")
        items_df = sel
        n_cov = int(df["item"].unique().is_in(items_df["item"].implode()).sum())
        notes.append(f"{n_cov:,} of {df['item'].n_unique():,} interacted items have a row in {ip.name}")
        files.append(ip)
    else:
        items_df = _items_only_ids(df)
    return _finish(name, df, items_df, None, tcol is not None, notes, files)


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
DATASETS: dict[str, Callable[[Path], RawData]] = {
    "ml-100k": load_ml_100k,
    "ml-1m": load_ml_1m,
    "ml-1m-pairs": load_ml_1m_pairs,
    "beauty": load_beauty,
    "sports": load_sports,
    "toys": load_toys,
    "yelp": load_yelp,
    "mind-sample": load_mind_sample,
    "taobao-sample": load_taobao_sample,
}


def _known_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DataError(
            None,
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}. "
            "For your own files use the generic loader: load_generic(path, user_col=..., item_col=..., time_col=...)",
        )
    return key


def source_files(name: str, root: str | Path | None = None) -> list[str]:
    """Absolute paths of the files ``load_raw(name, root)`` reads, without parsing them.

    Same list (and order) as ``RawData.source_files``; meant for cache look-ups.
    Files need not exist (a missing file is reported by the loader itself).
    """
    key = _known_name(name)
    return [str(p.resolve()) for p in _files(key, resolve_data_root(root))]


def load_raw(name: str, root: str | Path | None = None) -> RawData:
    """Load a staged dataset by name (see ``DATASETS``) from the data root.

    ``root`` may be the data root (holding the dataset folders) or the dataset's own folder.
    """
    key = _known_name(name)
    return DATASETS[key](resolve_data_root(root))
