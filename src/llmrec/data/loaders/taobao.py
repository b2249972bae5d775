"""Taobao UserBehavior sample: headerless CSV with a behaviour type per interaction."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import DataError
from .raw import RawData, build_interactions, finish
from .readers import check_ids, clip, int_column, read_lines, split_fixed
from .registry import staged


_TAOBAO_BEHAVIORS = ("pv", "buy", "cart", "fav")


@staged("taobao-sample", "taobao-userbehavior-sample", "UserBehavior.csv")
def load_taobao_sample(files: list[Path]) -> RawData:
    (path,) = files
    lines = read_lines(path, "headerless CSV lines 'user_id,item_id,category_id,behavior_type,timestamp'")
    (u, i, cat, beh, ts), linenos = split_fixed(
        path, lines, ",", ["user", "item", "category", "behavior", "timestamp"],
        "user_id,item_id,category_id,behavior_type,timestamp",
    )
    check_ids(path, u, linenos, "user", "user id")
    check_ids(path, i, linenos, "item", "item id")
    check_ids(path, cat, linenos, "category", "category id")
    bad_beh = ~beh.is_in(list(_TAOBAO_BEHAVIORS))
    if bool(bad_beh.any()):
        k = int(bad_beh.arg_max())
        raise DataError(
            path, f"expected a behavior type in {{{', '.join(_TAOBAO_BEHAVIORS)}}}, got {clip(str(beh[k]), 40)!r}",
            line=linenos[k], field="behavior",
        )
    order = int_column(path, ts, linenos, "timestamp", "an integer unix timestamp", allow_negative=True)
    df = build_interactions(u, i, order, beh)
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
    return finish("taobao-sample", df, items, None, True, notes, [path])
