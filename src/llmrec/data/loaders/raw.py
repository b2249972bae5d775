"""The loaders' result type, :class:`RawData`, and the helpers every loader uses to build one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import polars as pl


INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user": pl.Utf8,
    "item": pl.Utf8,
    "order": pl.Int64,
    "behavior": pl.Utf8,
    "row": pl.Int64,
}


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


def build_interactions(
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


def finish(
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


def items_only_ids(interactions: pl.DataFrame) -> pl.DataFrame:
    """Item frame without text: the distinct item ids, in numeric order when possible."""
    items = interactions.select(pl.col("item").unique())
    key = pl.col("item").cast(pl.Int64, strict=False)
    return items.sort(key, pl.col("item"), nulls_last=True)
