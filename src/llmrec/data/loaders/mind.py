"""MIND (small sample): click sequences from behaviors.tsv, news text from news.tsv."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from ..errors import DataError
from .raw import RawData, build_interactions, finish
from .readers import check_unique, clip, read_lines, split_fixed
from .registry import staged


_MIND_TIME_FMT = "%m/%d/%Y %I:%M:%S %p"


@staged("mind-sample", "mind-small-sample", "behaviors.tsv.gz", "news.tsv.gz")
def load_mind_sample(files: list[Path]) -> RawData:
    bpath, npath = files
    lines = read_lines(bpath, "MIND behaviors.tsv lines")
    (imp, uid, times, hist, imps), linenos = split_fixed(
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
                    bpath, f"expected a time like '11/12/2019 2:14:46 PM', got {clip(t, 40)!r}",
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
                        bpath, f"expected impression entries like 'N1234-1' (news id, '-', 0/1 click label), got {clip(tok, 40)!r}",
                        line=linenos[k], field="Impressions",
                    )
                if label == "1":
                    seq.append(nid)
        users_out.extend([u] * len(seq))
        items_out.extend(seq)
    if not items_out:
        raise DataError(bpath, "no clicks found in History or Impressions; expected at least one clicked news id")
    df = build_interactions(users_out, items_out)

    nlines = read_lines(npath, "MIND news.tsv lines")
    ncols, nlinenos = split_fixed(
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
    check_unique(npath, items["item"], nlinenos, "NewsID")
    with_text = df["item"].is_in(items["item"].implode()).sum()
    n_multi = sum(1 for ks in by_user.values() if len(ks) > 1)
    notes = [
        "sequence per user = the History clicks of the user's earliest impression row (in listed order), then "
        "the clicked (label 1) news of every impression row of that user in time order (ties by file row; "
        "within a row in listed order); history ids that appear only in a later row's History are added once, "
        f"just before that row's clicks ({n_extra_hist} such ids); "
        f"{n_multi:,} of {len(by_user):,} users have several impression rows",
        "History has no timestamps, so the data has no timestamps and order = position in the sequence",
        "History lists may contain the same news id twice and a clicked impression may repeat a history id; "
        "these repeats are kept",
        f"news.tsv and behaviors.tsv were sampled independently: only {int(with_text):,} of {df.height:,} "
        f"interactions ({with_text / df.height:.1%}) refer to a news id with text",
        "behavior is null (all interactions are clicks); non-clicked impressions are not kept",
    ]
    return finish("mind-sample", df, items, None, False, notes, [bpath, npath])
