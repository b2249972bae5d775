import os

import numpy as np
import polars as pl
import pytest

os.environ.setdefault("LLMREC_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own dataset cache unless it sets one."""
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path_factory.mktemp("cache")))


def make_raw(rows, items=None, has_timestamps=True, name="toy"):
    """RawData from (user, item, order) tuples in file order."""
    from llmrec.data.loaders import RawData

    users, its, orders = zip(*rows)
    inter = pl.DataFrame(
        {
            "user": [str(u) for u in users],
            "item": [str(i) for i in its],
            "order": pl.Series(orders, dtype=pl.Int64),
            "behavior": pl.Series([None] * len(rows), dtype=pl.Utf8),
            "row": pl.Series(range(len(rows)), dtype=pl.Int64),
        }
    )
    if items is None:
        items = pl.DataFrame({"item": sorted({str(i) for i in its}, key=int)}).with_columns(
            (pl.lit("title ") + pl.col("item")).alias("title")
        )
    return RawData(name=name, interactions=inter, items=items, users=None, has_timestamps=has_timestamps, notes=[], source_files=[])


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: faster than two, and far faster on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shared_data():
    from llmrec.data.errors import DataError
    from llmrec.data.loaders import resolve_data_root

    try:
        return resolve_data_root(None)
    except DataError:
        pytest.skip("../shared/datasets is not available")


def rng_sequences(n_users=30, n_items=40, min_len=4, max_len=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        L = rng.integers(min_len, max_len + 1)
        for pos, it in enumerate(rng.choice(np.arange(1, n_items + 1), size=L, replace=False)):
            rows.append((u, int(it), pos))
    return rows


def fit_until_crash(model, split, run_dir, after_epoch: int, **kw) -> None:
    """Fit ``model`` into ``run_dir`` and end it as a crash would, right after epoch ``after_epoch``'s checkpoint."""

    class Crash(Exception):
        pass

    def crash(m, epoch, info):
        if epoch == after_epoch:
            raise Crash

    with pytest.raises(Crash):
        model.fit(split, run_dir=run_dir, callbacks=[crash], **kw)
