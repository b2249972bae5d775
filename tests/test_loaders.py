"""Tests for llmrec.data.loaders (real staged datasets + bad-input handling + generic loader)."""

from __future__ import annotations

import gzip
import copy
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from llmrec.data.errors import DataError
from llmrec.data.loaders import (
    DATASETS,
    RawData,
    load_generic,
    load_ml_100k,
    load_raw,
    load_sports,
    resolve_data_root,
    source_files,
)

# --------------------------------------------------------------------------- #
# Real datasets
# --------------------------------------------------------------------------- #
EXPECTED = {
    # name: (users, items, interactions, has_timestamps)
    "ml-100k": (943, 1682, 100_000, True),
    "ml-1m": (2_999, 3_615, 487_650, True),
    "ml-1m-pairs": (6_040, 3_706, 1_000_209, False),
    "beauty": (22_363, 12_101, 198_502, False),
    "sports": (35_598, 18_357, 296_337, False),
    "toys": (19_412, 11_924, 167_597, False),
    "yelp": (30_431, 20_033, 316_354, False),
    "mind-sample": (4_637, None, None, False),  # derived sequences; checked separately
    "taobao-sample": (43, 3_276, 4_321, True),
}


def _data_root() -> Path:
    try:
        return resolve_data_root()
    except DataError:
        pytest.skip("staged datasets (shared/datasets) not found")


_CACHE: dict[str, RawData] = {}


def _load(name: str) -> RawData:
    if name not in _CACHE:
        _CACHE[name] = load_raw(name, _data_root())
    return _CACHE[name]


def test_registry_names():
    assert set(DATASETS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_dataset_counts_and_schema(name):
    raw = _load(name)
    users, items, n, has_ts = EXPECTED[name]
    df = raw.interactions
    assert raw.name == name
    assert raw.has_timestamps is has_ts
    assert df.columns == ["user", "item", "order", "behavior", "row"]
    assert df.schema == pl.Schema(
        {"user": pl.Utf8, "item": pl.Utf8, "order": pl.Int64, "behavior": pl.Utf8, "row": pl.Int64}
    )
    assert df["user"].n_unique() == users
    if items is not None:
        assert df["item"].n_unique() == items
    if n is not None:
        assert df.height == n
    assert df["user"].null_count() == 0 and df["item"].null_count() == 0 and df["order"].null_count() == 0
    # row = 0..n-1 in frame order (frame order = file order)
    assert df["row"].to_list() == list(range(df.height))
    if not has_ts:
        pos = df.select(pl.int_range(pl.len(), dtype=pl.Int64).over("user").alias("p"))["p"]
        assert (df["order"] == pos).all()
    else:
        assert df["order"].min() > 800_000_000  # plausible unix seconds
    assert "item" in raw.items.columns and raw.items["item"].dtype == pl.Utf8
    assert all(raw.items[c].dtype == pl.Utf8 for c in raw.text_columns)
    assert raw.items["item"].n_unique() == raw.items.height
    if raw.users is not None:
        assert raw.users["user"].dtype == pl.Utf8
    assert raw.source_files and all(Path(f).is_absolute() and Path(f).exists() for f in raw.source_files)
    assert source_files(name, _data_root()) == raw.source_files  # cache look-up without parsing
    assert raw.notes


def test_beauty_first_user_sequence_and_titles():
    raw = _load("beauty")
    first = raw.interactions.filter(pl.col("user") == "1")
    # file line 1 is `1 1 2 3 4 5`
    assert first["item"].to_list() == ["1", "2", "3", "4", "5"]
    assert first["order"].to_list() == [0, 1, 2, 3, 4]
    assert first["row"].to_list() == [0, 1, 2, 3, 4]
    assert raw.items.columns == ["item", "asin", "title"]
    assert raw.items["title"].drop_nulls().len() >= 12_094
    t1 = raw.items.filter(pl.col("item") == "1")
    assert t1["asin"].item() == "B004756YJA"
    assert t1["title"].item().startswith("OPI Nail Lacquer")


def test_movielens_text_and_notes():
    ml100k = _load("ml-100k")
    toy = ml100k.items.filter(pl.col("item") == "1")
    assert toy["title"].item() == "Toy Story (1995)"
    assert toy["genres"].item() == "Animation|Children's|Comedy"
    assert ml100k.users is not None and ml100k.users.height == 943
    ml1m = _load("ml-1m")
    assert any("1-2999" in n for n in ml1m.notes)
    assert ml1m.interactions["user"].cast(pl.Int64).max() == 2999
    assert ml1m.items.filter(pl.col("item") == "1")["genres"].item() == "Animation|Children's|Comedy"
    # latin-1 decoded correctly (movies.dat has accented titles)
    assert ml1m.items["title"].str.contains("é").any()


def test_yelp_repeats_kept_and_categories():
    raw = _load("yelp")
    df = raw.interactions
    repeats = df.height - df.select(pl.struct("user", "item").n_unique()).item()
    assert repeats > 0  # Yelp has repeat visits; the loader must not deduplicate
    assert raw.items.columns == ["item", "categories"]
    assert raw.items["categories"].drop_nulls().len() > 19_000


def test_mind_and_taobao():
    mind = _load("mind-sample")
    assert mind.items.columns == ["item", "title", "category", "subcategory", "abstract"]
    assert mind.items.height == 2000
    assert any("%" in n and "text" in n for n in mind.notes)
    # users' sequences start with their (first row's) history
    taobao = _load("taobao-sample")
    assert set(taobao.interactions["behavior"].unique().to_list()) == {"pv", "buy", "cart", "fav"}
    assert taobao.items.columns == ["item", "category"]


# --------------------------------------------------------------------------- #
# Bad input: ONE DataError naming file + line + expectation
# --------------------------------------------------------------------------- #
def _write_gz(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def test_data_error_format_and_copy():
    e = DataError("/p/u.data", "expected an integer unix timestamp, got 'abc'", line=17, field="timestamp")
    assert str(e) == "/p/u.data, line 17, field 'timestamp': expected an integer unix timestamp, got 'abc'"
    assert isinstance(e, ValueError)
    e2 = copy.deepcopy(e)  # goes through __reduce__, as sending the error across processes does
    assert str(e2) == str(e) and e2.line == 17


def test_p5_non_integer_item(tmp_path):
    f = _write_gz(
        tmp_path / "amazon-sports/p5_llm-recsys-id/sequential_data.txt.gz",
        "1 1 2 3\n2 4 5\n3 6 x7 8\n",
    )
    with pytest.raises(DataError) as ei:
        load_raw("sports", tmp_path)
    msg = str(ei.value)
    assert str(f) in msg and "line 3" in msg and "'x7'" in msg and "integer item id" in msg
    assert ei.value.line == 3


def test_p5_line_without_items_and_dataset_dir_as_root(tmp_path):
    d = tmp_path / "mysports"
    _write_gz(d / "p5_llm-recsys-id/sequential_data.txt.gz", "1 1 2 3\n2\n")
    with pytest.raises(DataError) as ei:
        load_sports(d)  # the dataset folder itself is accepted as root
    assert "sequential_data.txt.gz" in str(ei.value) and "line 2" in str(ei.value)


def test_p5_empty_and_missing_file(tmp_path):
    f = _write_gz(tmp_path / "amazon-toys/p5_rdrec/sequential.txt.gz", "")
    with pytest.raises(DataError, match="empty") as ei:
        load_raw("toys", tmp_path)
    assert str(f) in str(ei.value)
    with pytest.raises(DataError, match="file not found") as ei:
        load_raw("yelp", tmp_path)
    assert "sequential_data.txt.gz" in str(ei.value)


def test_movielens_bad_timestamp_and_field_count(tmp_path):
    d = tmp_path / "ml-100k"
    f = _write_gz(d / "u.data.gz", "1\t2\t3\t881250949\n1\t3\t4\tabc\n")
    with pytest.raises(DataError) as ei:
        load_ml_100k(tmp_path)
    assert str(ei.value) == f"{f}, line 2, field 'timestamp': expected an integer unix timestamp, got 'abc'"
    _write_gz(d / "u.data.gz", "1\t2\t3\t881250949\n1\t3\t4\n")
    with pytest.raises(DataError, match=r"line 2: expected 4 '\\t'-separated fields"):
        load_ml_100k(tmp_path)


def test_generic_missing_column(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,ts\n1,2,100\n")
    with pytest.raises(DataError) as ei:
        load_generic(f, user_col="user_id", item_col="item")
    msg = str(ei.value)
    assert str(f) in msg and "'item'" in msg and "'item_id'" in msg and "'ts'" in msg
    with pytest.raises(DataError, match="time_col: null"):
        load_generic(f, user_col="user_id", item_col="item_id")


def test_generic_empty_file(tmp_path):
    f = tmp_path / "empty.csv"
    f.write_text("")
    with pytest.raises(DataError, match="empty") as ei:
        load_generic(f)
    assert str(f) in str(ei.value)
    g = tmp_path / "header_only.csv"
    g.write_text("user,item,timestamp\n")
    with pytest.raises(DataError, match="no data") as ei:
        load_generic(g)
    assert str(g) in str(ei.value)


def test_generic_latin1_bytes_read_as_utf8(tmp_path):
    f = tmp_path / "events.tsv"
    f.write_bytes("user\titem\ttimestamp\nu1\ti1\t1\nu2\tcaf\u00e9\t2\n".encode("latin-1"))
    with pytest.raises(DataError) as ei:
        load_generic(f)
    msg = str(ei.value)
    assert str(f) in msg and "line 3" in msg and "utf-8" in msg.lower()
    # and it works once the right encoding is given
    raw = load_generic(f, encoding="latin-1")
    assert raw.interactions["item"].to_list() == ["i1", "caf\u00e9"]


def test_generic_ragged_line_and_bad_time(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text("user,item,timestamp\n1,2,100\n1,3,101,extra\n")
    with pytest.raises(DataError) as ei:
        load_generic(f)
    assert str(f) in str(ei.value) and "line 3" in str(ei.value)
    g = tmp_path / "events2.csv"
    g.write_text("user,item,timestamp\n1,2,2020-01-01T00:00:00\n1,3,not-a-date\n")
    with pytest.raises(DataError) as ei:
        load_generic(g)
    assert "line 3" in str(ei.value) and "ISO-8601" in str(ei.value) and ei.value.field == "timestamp"
    h = tmp_path / "events3.csv"
    h.write_text('user,item,timestamp\n1,2,5\n"",3,6\n')
    with pytest.raises(DataError) as ei:
        load_generic(h)
    assert "line 3" in str(ei.value) and ei.value.field == "user"


def test_unknown_dataset_name():
    with pytest.raises(DataError) as ei:
        load_raw("movielens-42")
    msg = str(ei.value)
    assert "movielens-42" in msg and "ml-100k" in msg and "taobao-sample" in msg and "generic: {interactions: FILE" in msg and "load_generic" not in msg


def test_resolve_data_root(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not found"):
        resolve_data_root(tmp_path / "nope")
    assert resolve_data_root(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("LLMREC_DATA", str(tmp_path))
    assert resolve_data_root() == tmp_path.resolve()
    monkeypatch.setenv("LLMREC_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="LLMREC_DATA"):
        resolve_data_root()


# --------------------------------------------------------------------------- #
# Generic loader round trips
# --------------------------------------------------------------------------- #
def _unix(s: str) -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp())


def test_generic_csv_roundtrip_with_items(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text(
        "uid,iid,ts,kind\n"
        "u1,a,1000,pv\n"
        "u2,b,900,buy\n"
        "u1,c,1000,pv\n"  # same second as row 0: tie broken by row
        "u1,b,500,cart\n"
    )
    it = tmp_path / "items.csv"
    it.write_text('iid,title,brand\na,"Apple, red",X\nb,Banana,\n')
    raw = load_generic(
        f, user_col="uid", item_col="iid", time_col="ts", behavior_col="kind", items_path=it,
        item_id_col="iid", text_cols=["title"], name="mine",
    )
    df = raw.interactions
    assert raw.name == "mine" and raw.has_timestamps
    assert df["user"].to_list() == ["u1", "u2", "u1", "u1"]
    assert df["item"].to_list() == ["a", "b", "c", "b"]
    assert df["order"].to_list() == [1000, 900, 1000, 500]
    assert df["behavior"].to_list() == ["pv", "buy", "pv", "cart"]
    assert df["row"].to_list() == [0, 1, 2, 3]
    assert raw.items.columns == ["item", "title"]
    assert raw.items.filter(pl.col("item") == "a")["title"].item() == "Apple, red"
    assert raw.source_files == [str(f.resolve()), str(it.resolve())]


def test_generic_no_time_gz_tsv_without_header(tmp_path):
    f = tmp_path / "seq.tsv.gz"
    _write_gz(f, "u1\ta\nu2\tb\nu1\tc\nu1\ta\n")
    raw = load_generic(f, user_col=0, item_col=1, time_col=None, has_header=False)
    df = raw.interactions
    assert not raw.has_timestamps
    assert df["order"].to_list() == [0, 0, 1, 2]
    assert df["behavior"].null_count() == 4
    assert any("repeat" in n for n in raw.notes)  # u1 -> a twice, kept


def test_generic_parquet_iso_timestamps(tmp_path):
    f = tmp_path / "events.parquet"
    times = ["2019-11-12T14:14:46Z", "2019-11-12 14:14:47", "2019-11-13T00:00:00+01:00"]
    pl.DataFrame({"user": [1, 1, 2], "item": [10, 11, 10], "timestamp": times}).write_parquet(f)
    raw = load_generic(f)
    df = raw.interactions
    assert df["user"].to_list() == ["1", "1", "2"]
    assert df["item"].to_list() == ["10", "11", "10"]
    assert df["order"].to_list() == [
        _unix("2019-11-12T14:14:46"),
        _unix("2019-11-12T14:14:47"),
        _unix("2019-11-12T23:00:00"),
    ]
    # a native datetime column works too
    g = tmp_path / "events_dt.parquet"
    pl.DataFrame(
        {"user": ["a"], "item": ["x"], "timestamp": [datetime(2020, 1, 1, tzinfo=timezone.utc)]}
    ).write_parquet(g)
    assert load_generic(g).interactions["order"].to_list() == [_unix("2020-01-01T00:00:00")]
    # missing column in parquet names the file and the columns found
    with pytest.raises(DataError) as ei:
        load_generic(f, item_col="movie")
    assert str(f) in str(ei.value) and "'movie'" in str(ei.value) and "'timestamp'" in str(ei.value)
