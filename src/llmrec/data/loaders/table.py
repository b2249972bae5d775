"""The CSV/TSV/parquet table reader behind the generic loader: format from the extension, field counts checked
line by line, and the physical line of any data record for error messages."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import DataError
from .readers import clip, decode, read_bytes, read_parquet


def infer_format(path: Path, sep: str | None) -> tuple[str, str | None]:
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
class Table:
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
        reader = csv.reader(io.StringIO(self.text), delimiter=self.sep or ",", **csv_quoting(self.sep))
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


def csv_quoting(sep: str | None) -> dict:
    return {} if sep == "," else {"quoting": csv.QUOTE_NONE}


def read_table(path: Path, sep: str | None, has_header: bool, encoding: str, what: str) -> Table:
    kind, sep = infer_format(path, sep)
    if kind == "parquet":
        return Table(path, read_parquet(path, what), "parquet")
    raw = read_bytes(path, what)
    text = decode(path, raw, encoding, what)
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
                f"{clip(lines[k])!r}",
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
        raise DataError(path, f"cannot parse as {sep!r}-separated text ({clip(msg)}); expected {what}", line=line) from None
    if df.height == 0:
        raise DataError(path, f"no data rows; expected {what}")
    return Table(path, df, "text", text=text, sep=sep, has_header=has_header)


def _first_ragged_line(text: str, sep: str, has_header: bool) -> int | None:
    reader = csv.reader(io.StringIO(text), delimiter=sep, **csv_quoting(sep))
    n = None
    for rec in reader:
        if not rec:
            continue
        if n is None:
            n = len(rec)
        elif len(rec) != n:
            return reader.line_num
    return None


def col_name(c: str | int | None, has_header: bool) -> str | None:
    if c is None:
        return None
    if isinstance(c, int):
        return str(c)
    return c
