"""`llmrec data export --format recbole`: the written atomic files, read back by a small reader written here
(not llmrec's, not RecBole's) and split by RecBole's rules, give exactly llmrec's leave-one-out split.

RecBole's rules, as implemented in RecBole 1.2.1 (read for facts only):
* tokens are renumbered in order of first appearance (0 = [PAD]) — irrelevant to the split;
* ``SequentialDataset.data_augmentation`` sorts by (user, timestamp) with stable argsorts applied key by key
  (timestamp first, then user), then makes one row per prefix: (user, items[:t], items[t]) for t >= 1;
* ``build`` sorts those rows by the target's timestamp (stable) — timestamps are float32 tensors there;
* 'LS': 'valid_and_test' groups rows by user in order and leaves out ``min(2, rows - 1)`` of them:
  the last one is test, the one before validation, the rest training.
"""

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import make_raw
from llmrec.data.dataset import DataConfig, load_dataset, prepare_raw
from llmrec.data.export import export_recbole, recbole_timestamps
from llmrec.data.splits import leave_one_out

REPO = Path(__file__).resolve().parents[1]
RECBOLE_PY = Path(os.environ.get("LLMREC_RECBOLE_PYTHON", REPO / "benchmarks" / ".venv-recbole" / "bin" / "python"))


# ---------------------------------------------------------------------------------------------------
# an independent reader + RecBole's split rules


def read_inter(path):
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        assert header == ["user_id:token", "item_id:token", "timestamp:float"]
        rows = [line.rstrip("\n").split("\t") for line in f]
    users = np.array([r[0] for r in rows])
    items = np.array([r[1] for r in rows])
    ts = np.array([float(r[2]) for r in rows], dtype=np.float32)  # RecBole: torch.FloatTensor
    return users, items, ts


def recbole_style_split(path):
    """{user token: (train targets, train first item, valid (hist, target) | None, test (hist, target) | None)}."""
    users, items, ts = read_inter(path)
    # first-appearance renumbering, as pd.factorize does
    _, first = np.unique(users, return_index=True)
    order_of_first = {u: k for k, u in enumerate(users[np.sort(first)])}
    uid = np.array([order_of_first[u] for u in users])
    # data_augmentation: sort(by=[uid, time]) = stable by time, then stable by uid
    idx = np.argsort(ts, kind="stable")
    idx = idx[np.argsort(uid[idx], kind="stable")]
    u_s, i_s, t_s = uid[idx], items[idx], ts[idx]
    aug = []  # (uid, history start, target position, target time): history = i_s[start:pos]
    start = 0
    for k in range(len(u_s)):
        if k == 0 or u_s[k] != u_s[k - 1]:
            start = k
            continue
        aug.append((u_s[k], start, k, t_s[k]))
    # build(): stable sort of the augmented rows by target time, then group by user in order
    aug_order = np.argsort(np.array([a[3] for a in aug], dtype=np.float32), kind="stable")
    groups: dict[int, list] = {}
    for k in aug_order:
        groups.setdefault(aug[k][0], []).append(aug[k])
    token_of = {v: k for k, v in order_of_first.items()}
    example = lambda r: (i_s[r[1] : r[2]].tolist(), str(i_s[r[2]]))  # noqa: E731
    out = {}
    for u in order_of_first.values():
        rows = groups.get(u, [])
        legal = min(2, len(rows) - 1) if rows else 0
        n_train = len(rows) - legal
        train, left = rows[:n_train], rows[n_train:]
        test = example(left[-1]) if legal >= 1 else None
        valid = example(left[0]) if legal == 2 else None
        seq_start = [str(i_s[rows[0][1]])] if rows else None
        out[token_of[u]] = ([str(i_s[r[2]]) for r in train], seq_start, valid, test)
    return out


def assert_same_split(ds, path):
    rb = recbole_style_split(path)
    sp = leave_one_out(ds)
    pos = {int(u): k for k, u in enumerate(sp.test.users)}
    lens = ds.lengths()
    assert set(rb) == {str(u) for u in range(ds.n_users)}
    n_checked = 0
    for u in range(ds.n_users):
        if lens[u] < 2:
            continue
        train_t, first, valid, test = rb[str(u)]
        seq = [str(x) for x in ds.sequence(u)]
        as_str = lambda a: [str(x) for x in a]  # noqa: E731
        if lens[u] >= 4:
            k = pos[u]
            assert valid == (as_str(sp.valid.histories[k]), str(sp.valid.targets[k])), u
            assert test == (as_str(sp.test.histories[k]), str(sp.test.targets[k])), u
            assert first + train_t == as_str(sp.train[u]), u  # training sequence = first item + prefix targets
            n_checked += 1
        elif lens[u] == 3:  # documented difference: RecBole has no validation row, trains on s0 -> s1
            k = pos[u]
            assert valid is None
            assert test == (as_str(sp.test.histories[k]), str(sp.test.targets[k]))
            assert first + train_t == seq[:2]
        else:  # 2 interactions: training-only in both
            assert u not in pos and valid is None and test is None
            assert first + train_t == seq == as_str(sp.train[u])
    return n_checked


# ---------------------------------------------------------------------------------------------------


def tie_heavy_rows(seed=0, n_users=60, n_items=50):
    """Unix-time-like orders with many same-second ties, users of every length 1..12, shuffled file order."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        L = int(rng.integers(1, 13))
        base = 1_700_000_000 + int(rng.integers(0, 10_000))
        t = base + np.sort(rng.integers(0, 4, size=L))  # lots of equal seconds
        for it, tt in zip(rng.choice(np.arange(1, n_items + 1), size=L, replace=False), t):
            rows.append((u, int(it), int(tt)))
    perm = rng.permutation(len(rows))  # interleave users and break time order in the file
    return [rows[i] for i in perm]


@pytest.mark.parametrize("timestamp", ["position", "order"])
@pytest.mark.parametrize("id_order", ["random", "original"])
def test_roundtrip_equals_llmrec_split(tmp_path, timestamp, id_order):
    ds = prepare_raw(make_raw(tie_heavy_rows()), DataConfig(name="toy", id_order=id_order))
    assert (ds.lengths() == 3).any() and (ds.lengths() < 3).any() and (ds.lengths() >= 4).any()
    m = export_recbole(ds, tmp_path / "toy", timestamp=timestamp)
    assert m["recbole_split_caveats"]["users_with_3_interactions_no_valid_in_recbole"] == int((ds.lengths() == 3).sum())
    n = assert_same_split(ds, tmp_path / "toy" / "toy.inter")
    assert n == int((ds.lengths() >= 4).sum()) > 10


def test_file_holds_our_data_in_our_order(tmp_path):
    ds = prepare_raw(make_raw(tie_heavy_rows(seed=1)), DataConfig(name="toy"))
    export_recbole(ds, tmp_path / "toy")
    users, items, ts = read_inter(tmp_path / "toy" / "toy.inter")
    assert users.astype(int).tolist() == np.repeat(np.arange(ds.n_users), ds.lengths()).tolist()
    assert items.astype(int).tolist() == ds.seq_items.tolist()
    assert ts.astype(np.int64).tolist() == recbole_timestamps(ds, "position").tolist()
    assert np.all(ts[ds.user_ptr[:-1][ds.lengths() > 0]] == 0)


def test_untimed_data_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    rows = [(u, int(i), p) for u in range(1, 40) for p, i in enumerate(rng.choice(np.arange(1, 30), size=int(rng.integers(4, 9)), replace=False))]
    ds = prepare_raw(make_raw(rows, has_timestamps=False), DataConfig(name="p5like"))
    m = export_recbole(ds, tmp_path / "p5like")
    assert m["has_timestamps"] is False
    assert assert_same_split(ds, tmp_path / "p5like" / "p5like.inter") == ds.n_users


def test_item_file_and_config(tmp_path):
    import polars as pl

    rows = [(1, 1, 0), (1, 2, 1), (1, 3, 2), (1, 4, 3), (2, 2, 0), (2, 3, 1), (2, 4, 2), (2, 1, 3)]
    items = pl.DataFrame({"item": ["1", "2", "3", "4"], "title": ['"Quoted" title', "tab\there", None, "plain"],
                          "my col": ["a", "b", "c", "d"]})
    ds = prepare_raw(make_raw(rows, items=items), DataConfig(name="toy", id_order="original"))
    m = export_recbole(ds, tmp_path / "toy")
    with open(tmp_path / "toy" / "toy.item", encoding="utf-8", newline="") as f:
        header = f.readline().rstrip("\n").split("\t")
        body = list(csv.reader(f, delimiter="\t"))
    assert header == ["item_id:token", "title:token_seq", "my_col:token_seq"]
    assert body == [["0", '"Quoted" title', "a"], ["1", "tab here", "b"], ["2", "", "c"], ["3", "plain", "d"]]
    assert m["item_text_fields"] == {"title": "title", "my col": "my_col"}
    import yaml

    cfg = yaml.safe_load((tmp_path / "toy" / "toy.yaml").read_text())
    assert cfg["dataset"] == "toy" and Path(cfg["data_path"]) == (tmp_path).resolve()
    assert cfg["eval_args"]["split"] == {"LS": "valid_and_test"} and cfg["eval_args"]["order"] == "TO"
    assert json.loads((tmp_path / "toy" / "export.json").read_text())["interactions"] == 8
    export_recbole(ds, tmp_path / "noitems", items=False)
    assert not (tmp_path / "noitems" / "noitems.item").exists()


def test_cli_export(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmrec.cli import app

    src = tmp_path / "log.csv"
    src.write_text("user,item,timestamp\n" + "\n".join(f"{u},{i},{100 + (i % 3)}" for u in range(1, 8) for i in range(1, 7)) + "\n")
    out = tmp_path / "exp" / "mine"
    res = CliRunner().invoke(app, ["data", "export", "generic", str(out), "--format", "recbole",
                                   "--set", f"generic.interactions={src}", "--set", "generic.user_col=user",
                                   "--set", "generic.item_col=item", "--set", "generic.time_col=timestamp"])
    assert res.exit_code == 0, res.output
    assert (out / "mine.inter").exists() and (out / "mine.yaml").exists()
    res = CliRunner().invoke(app, ["data", "export", "generic", str(out), "--format", "nope",
                                   "--set", f"generic.interactions={src}"])
    assert res.exit_code == 2 and "unknown format" in res.output


@pytest.mark.parametrize("name", ["ml-100k", "beauty"])
def test_staged_datasets_roundtrip(tmp_path, shared_data, name):
    ds = load_dataset(name)
    export_recbole(ds, tmp_path / name, items=False)
    assert assert_same_split(ds, tmp_path / name / f"{name}.inter") == ds.n_users  # every user has >= 5


# ---------------------------------------------------------------------------------------------------
# optional: RecBole itself (only where the benchmark's RecBole venv exists)

RB_SCRIPT = r"""
import json, sys, logging
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
cfg = Config(model="SASRec", config_file_list=[sys.argv[1]],
             config_dict={"train_neg_sample_args": None, "loss_type": "CE", "show_progress": False,
                          "MAX_ITEM_LIST_LENGTH": 1000, "state": "ERROR", "checkpoint_dir": sys.argv[3]})
logging.disable(logging.CRITICAL)
ds = create_dataset(cfg)
tr, va, te = data_preparation(cfg, ds)
tok = lambda f, ids: [str(x) for x in ds.id2token(f, ids)]
out = {}
for name, dl in (("train", tr), ("valid", va), ("test", te)):
    f = dl.dataset.inter_feat
    rows = []
    for u, h, n, t in zip(f["user_id"].tolist(), f["item_id_list"].tolist(), f["item_length"].tolist(), f["item_id"].tolist()):
        rows.append([tok("user_id", [u])[0], tok("item_id", h[:n]), tok("item_id", [t])[0]])
    out[name] = rows
json.dump(out, open(sys.argv[2], "w"))
"""


@pytest.mark.skipif(not RECBOLE_PY.exists(), reason="RecBole venv not built (python benchmarks/recbole_side_by_side.py --setup-only)")
def test_recbole_itself_gives_our_split(tmp_path):
    ds = prepare_raw(make_raw(tie_heavy_rows(seed=5)), DataConfig(name="toy"))
    export_recbole(ds, tmp_path / "toy")
    script = tmp_path / "rb.py"
    script.write_text(RB_SCRIPT)
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    r = subprocess.run([str(RECBOLE_PY), str(script), str(tmp_path / "toy" / "toy.yaml"), str(tmp_path / "out.json"),
                        str(tmp_path / "ckpt")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads((tmp_path / "out.json").read_text())
    sp = leave_one_out(ds)
    lens = ds.lengths()
    for part, es in (("valid", sp.valid), ("test", sp.test)):
        ours = {(str(u), tuple(map(str, h)), str(t)) for u, h, t in zip(es.users, es.histories, es.targets)
                if part == "test" or lens[u] >= 4}
        theirs = {(u, tuple(h), t) for u, h, t in got[part]}
        assert theirs == ours, part
    train = {}
    for u, h, t in got["train"]:
        train.setdefault(u, []).append((h, t))
    for u in range(ds.n_users):
        if lens[u] >= 4:
            rows = sorted(train[str(u)], key=lambda r: len(r[0]))
            assert rows[-1][0] + [rows[-1][1]] == [str(x) for x in sp.train[u]]
