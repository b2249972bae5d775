"""Low-level reading: bytes (gunzipped), strict decoding, fixed-field lines, parquet, id columns.

Every failure raises ONE :class:`~llmrec.data.errors.DataError` naming the file, the 1-based line and what was
expected.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import polars as pl

from ..errors import DataError


def read_bytes(path: Path, what: str) -> bytes:
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


def decode(path: Path, raw: bytes, encoding: str, what: str) -> str:
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


def read_lines(path: Path, what: str, encoding: str = "utf-8") -> list[str]:
    """All lines of a (possibly gzipped) text file, without line terminators.

    A single trailing empty line (final newline) is dropped, so ``lines[i]`` is
    line ``i + 1`` of the file.
    """
    text = decode(path, read_bytes(path, what), encoding, what)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def split_fixed(
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
            f"expected {n} {sep!r}-separated fields ({expected}), got {lens[k]}: {clip(s[k])!r}",
            line=int(linenos[k]),
        )
    cols = [parts.list.get(j).rename(names[j]) for j in range(n)]
    return cols, linenos


_INT_RE = r"^-?[0-9]+$"
_UINT_RE = r"^[0-9]+$"


def int_column(
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


def check_ids(path: Path, values: list[str], linenos: list[int], field_name: str, what: str) -> None:
    int_column(path, values, linenos, field_name, f"an integer {what}")


def clip(s: str, n: int = 120) -> str:
    return s if len(s) <= n else s[:n] + "..."


def check_unique(path: Path, ids: pl.Series, linenos: list[int], field_name: str) -> None:
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



def read_parquet(path: Path, what: str) -> pl.DataFrame:
    if not path.exists():
        raise DataError(path, f"file not found; expected {what}")
    if path.is_dir():
        raise DataError(path, f"is a directory; expected a file ({what})")
    if path.stat().st_size == 0:
        raise DataError(path, f"file is empty; expected {what}")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars/pyarrow raise various types for corrupt files
        raise DataError(path, f"cannot read as parquet ({clip(str(e).splitlines()[0] if str(e) else type(e).__name__)}); expected {what}") from None
    if df.height == 0:
        raise DataError(path, f"parquet file has no rows; expected {what}")
    return df


def require_columns(path: Path, df: pl.DataFrame, needed: Iterable[str | None], hint: str = "") -> None:
    for c in needed:
        if c is not None and c not in df.columns:
            raise DataError(
                path,
                f"missing column {c!r}; columns found: {', '.join(repr(x) for x in df.columns)}{hint}",
                field=c,
            )

