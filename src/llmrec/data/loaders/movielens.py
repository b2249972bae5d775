"""MovieLens: ML-100K, ML-1M (the timestamped users) and the ML-1M (user, movie) pairs without timestamps."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import DataError
from .raw import RawData, build_interactions, finish
from .readers import check_ids, check_unique, int_column, read_lines, read_parquet, require_columns, split_fixed
from .registry import staged


def _read_genre_names(path: Path) -> list[str]:
    lines = read_lines(path, "u.genre ('name|index' lines)", encoding="latin-1")
    (names, idx), linenos = split_fixed(path, lines, "|", ["name", "index"], "genre name|index")
    idx_s = int_column(path, idx, linenos, "index", "an integer genre index")
    if idx_s.to_list() != list(range(len(names))):
        raise DataError(path, "expected genre indices 0, 1, 2, ... in order")
    return names.to_list()


def _read_ratings(path: Path, sep: str, what: str, expected: str, item_word: str) -> pl.DataFrame:
    """The interactions of a 'user item rating timestamp' file (ratings are not kept), in file order."""
    lines = read_lines(path, what)
    (u, i, _r, ts), linenos = split_fixed(path, lines, sep, ["user", "item", "rating", "timestamp"], expected)
    check_ids(path, u, linenos, "user", "user id")
    check_ids(path, i, linenos, "item", item_word)
    order = int_column(path, ts, linenos, "timestamp", "an integer unix timestamp", allow_negative=True)
    return build_interactions(u, i, order)


def _read_users(path: Path, sep: str, fields: list[str], expected: str, ints: dict[str, str]) -> pl.DataFrame:
    """A MovieLens user table: one ``sep``-separated line per user; the ``ints`` fields must be integers (errors name
    the file, line and field)."""
    lines = read_lines(path, f"'{expected}' lines", encoding="latin-1")
    cols, linenos = split_fixed(path, lines, sep, fields, expected)
    check_ids(path, cols[0], linenos, "user", "user id")
    data = {f: int_column(path, c, linenos, f, ints[f]) if f in ints else c for f, c in zip(fields, cols)}
    return pl.DataFrame(data, schema={f: pl.Int64 if f in ints else pl.Utf8 for f in fields})


@staged("ml-100k", "ml-100k", "u.data.gz", "u.item", "u.genre", "u.user")
def load_ml_100k(files: list[Path]) -> RawData:
    upath, ipath, gpath, uspath = files
    df = _read_ratings(upath, "\t", "tab-separated 'user item rating timestamp' lines",
                       "user, item, rating, unix timestamp", "item id")

    genres = _read_genre_names(gpath)
    names = ["item", "title", "release_date", "video_release_date", "imdb_url", *genres]
    lines = read_lines(ipath, "'|'-separated movie lines", encoding="latin-1")
    cols, linenos = split_fixed(
        ipath, lines, "|", names,
        f"movie id|title|release date|video release date|IMDb URL|{len(genres)} genre flags",
    )
    check_ids(ipath, cols[0], linenos, "item", "movie id")
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
    check_unique(ipath, items["item"], linenos, "item")

    users = _read_users(uspath, "|", ["user", "age", "gender", "occupation", "zip"],
                        "user id|age|gender|occupation|zip code", {"age": "an integer age"})
    notes = [
        "order = unix timestamp (seconds); many ratings share the same second, ties are broken by file row",
        "ratings (1-5) are not kept: every rating counts as an interaction",
    ]
    return finish("ml-100k", df, items, users, True, notes, [upath, ipath, gpath, uspath])


def _ml1m_side(mpath: Path, upath: Path) -> tuple[pl.DataFrame, pl.DataFrame, list[Path]]:
    lines = read_lines(mpath, "'MovieID::Title::Genres' lines (latin-1)", encoding="latin-1")
    (mid, title, genres), linenos = split_fixed(mpath, lines, "::", ["item", "title", "genres"], "MovieID::Title::Genres")
    check_ids(mpath, mid, linenos, "item", "movie id")
    items = pl.DataFrame(
        {"item": mid, "title": title, "genres": genres},
        schema={"item": pl.Utf8, "title": pl.Utf8, "genres": pl.Utf8},
    ).with_columns(pl.when(pl.col("genres") == "").then(None).otherwise(pl.col("genres")).alias("genres"))
    check_unique(mpath, items["item"], linenos, "item")

    users = _read_users(upath, "::", ["user", "gender", "age", "occupation", "zip"],
                        "UserID::Gender::Age::Occupation::Zip-code",
                        {"age": "an integer age-group code", "occupation": "an integer occupation code"})
    return items, users, [mpath, upath]


@staged("ml-1m", "ml-1m", "ratings.users-0001-2999.dat.gz", "movies.dat", "users.dat")
def load_ml_1m(files: list[Path]) -> RawData:
    rpath, mpath, upath = files
    df = _read_ratings(rpath, "::", "'UserID::MovieID::Rating::Timestamp' lines",
                       "UserID::MovieID::Rating::Timestamp", "movie id")
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
    return finish("ml-1m", df, items, users, True, notes, [rpath, *side])


@staged("ml-1m-pairs", "ml-1m", "ratings.user-movie-pairs.parquet", "movies.dat", "users.dat")
def load_ml_1m_pairs(files: list[Path]) -> RawData:
    ppath, mpath, upath = files
    tab = read_parquet(ppath, "a parquet file with string columns userID, movieID")
    require_columns(ppath, tab, ["userID", "movieID"])
    u = tab["userID"].cast(pl.Utf8)
    i = tab["movieID"].cast(pl.Utf8)
    for s, f in ((u, "userID"), (i, "movieID")):
        int_column(ppath, s, None, f, "an integer id")
    df = build_interactions(u, i)
    items, users, side = _ml1m_side(mpath, upath)
    notes = [
        "all 1,000,209 ML-1M (user, movie) pairs but NO timestamps or ratings: order = position of the "
        "pair within the user's rows in the original ratings.dat order",
        "ratings.dat is grouped by user but is NOT chronological within a user: do not treat this order "
        "as time order (use 'ml-1m' for timestamped sequences of users 1-2999)",
    ]
    return finish("ml-1m-pairs", df, items, users, False, notes, [ppath, *side])
