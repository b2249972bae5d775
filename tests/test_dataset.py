import numpy as np
import polars as pl

from conftest import make_raw
from llmrec.data.dataset import DataConfig, kcore, prepare_raw


def cfg(**kw):
    return DataConfig(name="toy", **kw)


def test_stable_sort_keeps_file_order_on_timestamp_ties():
    # user 1 rates items 30 and 10 in the same second; file order says 30 first, then 10
    rows = [(1, 20, 100), (1, 30, 200), (1, 10, 200), (2, 10, 5), (2, 20, 1)]
    ds = prepare_raw(make_raw(rows), cfg(id_order="original"))
    ids = ds.item_ids
    seq1 = [ids[i] for i in ds.sequence(0)]
    assert seq1 == ["20", "30", "10"]  # tie kept in file order, so "10" is the last (test) item
    seq2 = [ids[i] for i in ds.sequence(1)]
    assert seq2 == ["20", "10"]  # sorted by timestamp


def test_original_order_indexes_numeric_ids_numerically():
    rows = [(1, 10, 0), (1, 9, 1), (1, 100, 2)]
    ds = prepare_raw(make_raw(rows), cfg(id_order="original"))
    assert ds.item_ids == ["9", "10", "100"]
    assert ds.sequence(0).tolist() == [1, 0, 2]


def test_random_id_order_is_a_seeded_permutation():
    rows = [(u, i, p) for u in range(1, 6) for p, i in enumerate(range(1, 21))]
    a = prepare_raw(make_raw(rows), cfg(id_order="random", id_seed=1))
    b = prepare_raw(make_raw(rows), cfg(id_order="random", id_seed=1))
    c = prepare_raw(make_raw(rows), cfg(id_order="random", id_seed=2))
    assert a.item_ids == b.item_ids != c.item_ids
    assert sorted(a.item_ids, key=int) == [str(i) for i in range(1, 21)]
    # the sequences mean the same original items whatever the numbering
    for ds in (a, c):
        assert [ds.item_ids[i] for i in ds.sequence(0)] == [str(i) for i in range(1, 21)]
    # the text follows the item
    row = a.item_text.filter(pl.col("item") == a.sequence(0)[0]).row(0, named=True)
    assert row["title"] == "title 1"
    # the leak: consecutive ids everywhere in the original order, rare after the permutation
    assert a.info["id_leak"]["original"]["consecutive_pairs_diff1"] == 1.0
    assert a.info["id_leak"]["current"]["consecutive_pairs_diff1"] < 0.3


def test_iterative_kcore():
    # item 3 has 2 users -> removed at k=3; then users 2 and 3 fall to 2 interactions -> removed
    df = pl.DataFrame({
        "user": ["1", "1", "1", "2", "2", "2", "3", "3", "3", "4", "4", "4", "5", "5", "5"],
        "item": ["1", "2", "4", "1", "2", "3", "1", "3", "4", "1", "2", "4", "1", "2", "4"],
    })
    out = kcore(df, 3, 3)
    # the cascade removes users 2 and 3 and item 3; users 1, 4, 5 x items 1, 2, 4 survive
    assert sorted(out["user"].unique().to_list()) == ["1", "4", "5"]
    assert sorted(out["item"].unique().to_list()) == ["1", "2", "4"]
    assert (out.group_by("user").len()["len"] >= 3).all()
    assert (out.group_by("item").len()["len"] >= 3).all()
    assert "3" not in out["item"].to_list()
    assert "2" not in out["user"].to_list()


def test_dedup_modes():
    rows = [(1, 5, 0), (1, 5, 0), (1, 6, 1), (1, 5, 2)]
    assert prepare_raw(make_raw(rows), cfg(dedup="none")).n_interactions == 4
    assert prepare_raw(make_raw(rows), cfg(dedup="exact")).n_interactions == 3
    assert prepare_raw(make_raw(rows), cfg(dedup="user_item")).n_interactions == 2


def test_cache_roundtrip(tmp_path, shared_data):
    from llmrec.data.dataset import load_dataset

    a = load_dataset(DataConfig(name="ml-100k", cache_dir=str(tmp_path)))
    b = load_dataset(DataConfig(name="ml-100k", cache_dir=str(tmp_path)))
    assert not a.info["from_cache"] and b.info["from_cache"]
    assert np.array_equal(a.seq_items, b.seq_items) and np.array_equal(a.user_ptr, b.user_ptr)
    assert a.item_ids == b.item_ids and a.item_text.equals(b.item_text)
    c = load_dataset(DataConfig(name="ml-100k", cache_dir=str(tmp_path), id_seed=7))
    assert not c.info["from_cache"]


def test_palr_ml1m_5core(shared_data):
    from llmrec.data.dataset import load_dataset

    ds = load_dataset(DataConfig(name="ml-1m-pairs", min_user_interactions=5, min_item_interactions=5))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6040, 3416, 999611)
