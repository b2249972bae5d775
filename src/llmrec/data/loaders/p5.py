"""P5-style sequence files (``user item item ...``, one line per user): Amazon Beauty / Sports / Toys and Yelp."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from ..errors import DataError
from .raw import RawData, build_interactions, finish, items_only_ids
from .readers import check_ids, check_unique, clip, decode, read_bytes, read_lines, split_fixed
from .registry import staged


_P5_EXPECTED = "'user_id item_id [item_id ...]': an integer user id followed by integer item ids, space-separated"


def _parse_p5(path: Path) -> pl.DataFrame:
    lines = read_lines(path, "a P5 sequence file (" + _P5_EXPECTED + ")")
    users: list[str] = []
    items: list[str] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(path, f"expected {_P5_EXPECTED}; got only {len(parts)} field: {clip(line)!r}", line=i)
        joined = "".join(parts)
        if not (joined.isdigit() and joined.isascii()):
            k = next(k for k, t in enumerate(parts) if not (t.isdigit() and t.isascii()))
            what = "user id" if k == 0 else f"item id (field {k + 1})"
            raise DataError(
                path,
                f"expected an integer {what} in {_P5_EXPECTED}, got {clip(parts[k], 40)!r}",
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
    return build_interactions(users, items)


_P5_NOTE = (
    "no timestamps: order = 0-based position in the user's P5 sequence "
    "(P5 sequences are chronological)"
)




@staged("beauty", "amazon-beauty", "p5_llm-recsys-id/sequential_data.txt.gz", "item_titles.tsv.gz")
def load_beauty(files: list[Path]) -> RawData:
    df, notes = _parse_p5(files[0]), [_P5_NOTE]
    tpath = files[1]
    lines = read_lines(tpath, "a TSV with header 'p5_item_id<TAB>asin<TAB>title'")
    header = lines[0].split("\t")
    if header != ["p5_item_id", "asin", "title"]:
        raise DataError(tpath, f"expected header 'p5_item_id<TAB>asin<TAB>title', got {clip(lines[0])!r}", line=1)
    (ids, asins, titles), linenos = split_fixed(
        tpath, lines, "\t", header, "p5_item_id, asin, title", skip_lines=1
    )
    check_ids(tpath, ids, linenos, "p5_item_id", "P5 item id")
    items = pl.DataFrame(
        {"item": ids, "asin": asins, "title": titles},
        schema={"item": pl.Utf8, "asin": pl.Utf8, "title": pl.Utf8},
    ).with_columns(pl.when(pl.col("title").str.strip_chars() == "").then(None).otherwise(pl.col("title")).alias("title"))
    check_unique(tpath, items["item"], linenos, "p5_item_id")
    n_missing = items["title"].null_count()
    notes.append(
        f"item ids are the P5 integer ids; items.asin is the Amazon ASIN; {items.height - n_missing:,} items have a title"
        + (f" ({n_missing} empty titles set to null)" if n_missing else "")
    )
    notes.append("titles come from the 2014 metadata via a regex extraction (close to, not byte-identical with, raw metadata)")
    return finish("beauty", df, items, None, False, notes, files)


@staged("sports", "amazon-sports", "p5_llm-recsys-id/sequential_data.txt.gz")
def load_sports(files: list[Path]) -> RawData:
    df, notes = _parse_p5(files[0]), [_P5_NOTE]
    notes.append("no item text is available for this dataset (items frame has only ids)")
    return finish("sports", df, items_only_ids(df), None, False, notes, files)


@staged("toys", "amazon-toys", "p5_rdrec/sequential.txt.gz")
def load_toys(files: list[Path]) -> RawData:
    df, notes = _parse_p5(files[0]), [_P5_NOTE]
    notes.append("no item text is available for this dataset (items frame has only ids)")
    return finish("toys", df, items_only_ids(df), None, False, notes, files)


@staged("yelp", "yelp-p5", "p5_llm-recsys-id/sequential_data.txt.gz", "p5_llm-recsys-id/closed_categories.json.gz")
def load_yelp(files: list[Path]) -> RawData:
    df, notes = _parse_p5(files[0]), [_P5_NOTE]
    cpath = files[1]
    what = "a JSON object mapping item idx -> list of category strings"
    text = decode(cpath, read_bytes(cpath, what), "utf-8", what)
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
            raise DataError(cpath, f"expected a list of category strings for item {k!r}, got {clip(repr(v), 60)}")
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
    return finish("yelp", df, items, None, False, notes, files)

