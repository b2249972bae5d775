"""The generic loader for a user's own files (CSV/TSV/parquet, optionally gzipped)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import polars as pl

from ..errors import DataError
from .raw import RawData, build_interactions, finish, items_only_ids
from .readers import clip, require_columns
from .table import Table, col_name, infer_format, read_table


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


def _time_to_unix(table: Table, col: str) -> tuple[pl.Series, list[str]]:
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
                f"{clip(str(s[idx]), 40)!r}{extra}", line=line, field=col,
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
                        f"(e.g. '2019-11-12T14:14:46Z'), got {clip(str(s[idx]), 40)!r}{extra}",
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
    table = read_table(ipath, sep, has_header, encoding, what)
    ucol, icol = col_name(user_col, has_header), col_name(item_col, has_header)
    tcol, bcol = col_name(time_col, has_header), col_name(behavior_col, has_header)
    hint = ""
    if tcol is not None and tcol not in table.df.columns:
        hint = " (set `time_col: null` if the data has no timestamps; order then = position in file per user)"
    if not has_header:
        hint += " (`has_header: false`: address columns by 0-based position, e.g. `user_col: 0`)"
    require_columns(ipath, table.df, [ucol, icol, tcol, bcol], hint)
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
    df = build_interactions(users, items, order, beh)

    files = [ipath]
    if items_path is not None:
        ip = Path(items_path).expanduser()
        it = read_table(ip, None if sep is None or infer_format(ip, None)[0] == "parquet" else sep,
                         has_header, encoding, "an items table with an item id column and text columns")
        idc = col_name(item_id_col, has_header)
        tcols = [col_name(c, has_header) for c in text_cols] if text_cols is not None else [
            c for c in it.df.columns if c != idc
        ]
        require_columns(ip, it.df, [idc, *tcols])
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
        items_df = items_only_ids(df)
    return finish(name, df, items_df, None, tcol is not None, notes, files)
