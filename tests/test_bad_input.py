"""Bad input, bad config and damaged files: one clear, typed error each (naming the key / file / line), never a
traceback, never a silently wrong result (issue 16).

Most cases go in-process through the functions the CLI calls (``load_config``, ``pipelines.run.run``,
``load_dataset``, the trainer); a handful go through the real ``llmrec`` command to check what it prints.
Data are tiny generated CSV files; the only trained model is a 1-block SASRec on 30 users.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from llmrec.cli import expected_errors
from llmrec.config import ConfigError, load_config
from llmrec.data.dataset import DataConfig, load_dataset
from llmrec.data.errors import DataError
from llmrec.pipelines.run import run
from llmrec.training import checkpoint as ckpt
from llmrec.training.checkpoint import CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_SASREC = {"hidden": 8, "max_len": 6, "blocks": 1, "heads": 1, "loss": "ce", "dropout": 0.1}


# -- helpers -------------------------------------------------------------------------------------------
def write_csv(path: Path, n_users: int = 30, n_items: int = 30, length: int = 6, header: str = "user,item,timestamp",
              times: bool = True) -> Path:
    lines = [header]
    for u in range(n_users):
        for j in range(length):
            item = (u * 7 + j * 3) % n_items
            lines.append(f"{u},{item},{1_600_000_000 + u * 1000 + j * 60}" if times else f"{u},{item}")
    path.write_text("\n".join(lines) + "\n")
    return path


def base_cfg(csv: Path, **extra) -> dict:
    d = {"name": "t", "data": {"name": "generic", "generic": {"interactions": str(csv)}}, "model": "itemknn",
         "eval": {"ks": [5, 10]}, "progress": False, "threads": 1}
    for k, v in extra.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return d


def write_yaml(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def check_error(exc: BaseException, *needles: str, max_lines: int = 6) -> str:
    """A typed llmrec error, a short message naming what is wrong."""
    assert isinstance(exc, expected_errors()), f"{type(exc).__name__} is not a typed llmrec error: {exc}"
    msg = str(exc)
    assert 1 <= len(msg.splitlines()) <= max_lines, msg
    assert "Traceback" not in msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "LLMREC_PROGRESS": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "llmrec", *args], capture_output=True, text=True, env=e, cwd=cwd,
                          timeout=120, check=False)


def cli_in_process(capsys, monkeypatch, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The same ``llmrec`` entry point (typer app + main's error printing), without a new interpreter."""
    from llmrec.cli import main

    monkeypatch.setattr(sys, "argv", ["llmrec", *args])
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    with pytest.raises(SystemExit) as ei:
        main()
    cap = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), ei.value.code, cap.out, cap.err)


def check_cli_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out, out
    assert r.stderr.startswith("error: "), r.stderr
    assert len(r.stderr.strip().splitlines()) <= 6, r.stderr
    for n in needles:
        assert n in r.stderr, f"{n!r} not in {r.stderr!r}"


@pytest.fixture
def csv(tmp_path):
    return write_csv(tmp_path / "log.csv")


# -- 1. every config value is validated when the config loads -------------------------------------------
# (id, patch of the config, the key the message must name)
CONFIG_CASES = [
    ("grad_clip_negative", {"train": {"grad_clip": -1}}, "train.grad_clip"),
    ("grad_clip_zero", {"train": {"grad_clip": 0}}, "train.grad_clip"),
    ("patience_zero", {"train": {"patience": 0}}, "train.patience"),
    ("max_eval_users_zero", {"train": {"max_eval_users": 0}}, "train.max_eval_users"),
    ("monitor_not_a_metric", {"train": {"monitor": "accuracy"}}, "train.monitor"),
    ("monitor_k_zero", {"train": {"monitor": "NDCG@0"}}, "train.monitor"),
    ("lr_zero", {"train": {"lr": 0}}, "train.lr"),
    ("epochs_negative", {"train": {"epochs": -1}}, "train.epochs"),
    ("ks_zero", {"eval": {"ks": [0]}}, "eval.ks"),
    ("ks_negative", {"eval": {"ks": [5, -1]}}, "eval.ks"),
    ("ks_empty", {"eval": {"ks": []}}, "eval.ks"),
    ("ks_duplicate", {"eval": {"ks": [5, 5]}}, "eval.ks"),
    ("seed_negative", {"seed": -1}, "seed"),
    ("threads_negative", {"threads": -1}, "threads"),
    ("threads_zero", {"threads": 0}, "threads"),
    ("id_seed_negative", {"data": {"id_seed": -3}}, "data.id_seed"),
    ("candidate_seed_negative", {"split": {"candidates": {"n_neg": 5, "seed": -1}}}, "split.candidates.seed"),
    ("n_neg_zero", {"split": {"candidates": {"n_neg": 0}}}, "split.candidates.n_neg"),
    ("session_key_on_loo", {"split": {"session_gap": 600}},
     "split.session_gap: unknown key for split.protocol 'loo' (it belongs to protocol 'session')"),
    ("records_key_on_loo", {"split": {"records": {"sizes": [5, 1, 1]}}}, "split.records: unknown key for split.protocol 'loo'"),
    ("candidates_on_session", {"model": "hrnn", "split": {"protocol": "session", "candidates": {"n_neg": 5}}},
     "split.candidates: unknown key for split.protocol 'session' (it belongs to protocol 'loo' / 'records')"),
    ("session_key_on_records", {"split": {"protocol": "records", "session_dedup": True}},
     "split.session_dedup: unknown key for split.protocol 'records'"),
    ("protocol_unknown", {"split": {"protocol": "lou"}}, "split.protocol: expected one of 'loo', 'session', 'records' (got 'lou')"),
    ("split_not_a_section", {"split": "loo"}, "split: expected a section"),
    ("itemknn_k_zero", {"params": {"k": 0}}, "params.k"),
    ("itemknn_shrink_negative", {"params": {"shrink": -1}}, "params.shrink"),
    ("itemknn_decay_negative", {"params": {"position_decay": -2}}, "params.position_decay"),
    ("itemknn_decay_above_one", {"params": {"position_decay": 1.5}}, "params.position_decay"),
    ("itemknn_recent_negative", {"params": {"recent": -1}}, "params.recent"),
    ("itemknn_unknown_param", {"params": {"kk": 3}}, "params.kk: unknown key"),
    ("sasrec_heads_do_not_divide", {"model": "sasrec", "params": {"hidden": 10, "heads": 3}}, "divisible by heads"),
    ("bert4rec_heads_do_not_divide", {"model": "bert4rec", "params": {"hidden": 10, "heads": 4}}, "divisible by heads"),
    ("sasrec_dropout_one", {"model": "sasrec", "params": {"dropout": 1.0}}, "params.dropout"),
    ("caser_L_zero", {"model": "caser", "params": {"L": 0}}, "params.L"),
    ("ncf_negatives_zero", {"model": "ncf", "params": {"negatives": 0}}, "params.negatives"),
    ("bpr_dim_zero", {"model": "bpr", "params": {"dim": 0}}, "params.dim"),
    ("gru4rec_hidden_zero", {"model": "gru4rec", "params": {"hidden": 0}}, "params.hidden"),
    ("hnvm_on_loo", {"model": "hnvm"}, "split.protocol"),
    ("hrnn_on_loo", {"model": "hrnn"}, "split.protocol"),
    ("hrnn_init_range_negative", {"model": "hrnn", "split": {"protocol": "session"}, "params": {"init_range": -0.1}},
     "params.init_range"),
    ("hllm_temperatures", {"model": "hllm", "params": {"temperature_init": 0.01, "temperature_min": 0.05}},
     "temperature_min"),
    ("hllm_eval_max_len_zero", {"model": "hllm", "params": {"eval_max_len": 0}}, "params.eval_max_len"),
    ("unknown_model", {"model": "nosuch"}, "unknown model"),
    ("unknown_top_key", {"bogus": 1}, "bogus: unknown key"),
    ("name_parent_dir", {"name": "../escape"}, "name"),
    ("name_absolute", {"name": "/tmp/abs"}, "name"),
    ("name_dot_dot", {"name": ".."}, "name"),
    ("data_name_parent_dir", {"data": {"name": "../../x"}}, "data.name"),
    ("data_name_absolute", {"data": {"name": "/etc"}}, "data.name"),
    ("generic_labelled_as_staged", {"data": {"name": "ml-100k"}}, "data.generic is set"),
    ("dedup_unknown", {"data": {"dedup": "maybe"}}, "data.dedup"),
]


@pytest.mark.parametrize("patch,key", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value_fails_when_it_loads_naming_key_and_file(tmp_path, csv, patch, key):
    p = write_yaml(tmp_path / "bad.yaml", base_cfg(csv, **patch))
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    check_error(ei.value, key, str(p))


# the same values given with --set are blamed on --set, not on the file
SET_CASES = [
    ("train.grad_clip=-1", "train.grad_clip"),
    ("params.k=0", "params.k"),
    ("params.position_decay=-2", "params.position_decay"),
    ("eval.ks=[0]", "eval.ks"),
    ("seed=-1", "seed"),
    ("name=../../escape", "name"),
    ("model=hnvm", "split.protocol"),
    ("split.session_gap=600", "split.session_gap: unknown key for split.protocol 'loo'"),
    ("model=nosuch", "unknown model"),
]


@pytest.mark.parametrize("override,key", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_bad_value_given_with_set_is_blamed_on_set(tmp_path, csv, override, key):
    p = write_yaml(tmp_path / "good.yaml", base_cfg(csv))
    with pytest.raises(ConfigError) as ei:
        load_config(p, [override])
    msg = check_error(ei.value, key, f"--set {override}")
    assert f"invalid config in {p}" not in msg  # the file is not blamed
    assert ei.value.source == f"--set {override}" or ei.value.source.startswith("--set")


def test_file_value_blamed_on_file_even_with_other_overrides(tmp_path, csv):
    p = write_yaml(tmp_path / "bad.yaml", base_cfg(csv, train={"grad_clip": -1}))
    with pytest.raises(ConfigError) as ei:
        load_config(p, ["eval.ks=[5]"])
    msg = check_error(ei.value, "train.grad_clip", f"invalid config in {p}")
    assert "--set" not in msg


BROKEN_FILES = [
    ("yaml_syntax", "data: {name: x\nmodel: pop\n", "not valid YAML"),
    ("not_a_mapping", "- just\n- a list\n", "expected a mapping"),
    ("not_utf8", b"model: \xff\xfe\n", "cannot read"),
]


@pytest.mark.parametrize("content,needle", [c[1:] for c in BROKEN_FILES], ids=[c[0] for c in BROKEN_FILES])
def test_broken_config_file(tmp_path, content, needle):
    p = tmp_path / "c.yaml"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    check_error(ei.value, needle, str(p), max_lines=8)


def test_missing_config_file_and_directory(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "nope.yaml")
    check_error(ei.value, "config file not found", "nope.yaml")
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path)
    check_error(ei.value, "is a directory")


# -- 1b. the config against the data, after it loads and before any training ---------------------------
def _run_fails(tmp_path, d: dict, *needles: str, sets: list[str] | None = None, error=ConfigError) -> str:
    out = tmp_path / "run"
    cfg = load_config(write_yaml(tmp_path / "c.yaml", d), sets or [])
    with pytest.raises(error) as ei:
        run(cfg, out)
    assert not (out / "metrics.json").exists()  # no result at all, rather than a wrong one
    assert not (out / "model").exists()  # nothing was fit
    return check_error(ei.value, *needles)


def test_session_protocol_on_data_without_timestamps(tmp_path):
    csv = write_csv(tmp_path / "nots.csv", header="user,item", times=False)
    d = base_cfg(csv, split={"protocol": "session"})
    d["data"]["generic"]["time_col"] = None
    _run_fails(tmp_path, d, "split.protocol", "no timestamps", str(tmp_path / "c.yaml"))


def test_n_neg_larger_than_the_catalogue(tmp_path, csv):
    _run_fails(tmp_path, base_cfg(csv, split={"candidates": {"n_neg": 500}}), "split.candidates.n_neg", "30 items")


def test_n_neg_from_set_is_blamed_on_set(tmp_path, csv):
    msg = _run_fails(tmp_path, base_cfg(csv), "split.candidates.n_neg", sets=["split.candidates.n_neg=40"])
    assert "--set split.candidates.n_neg=40" in msg


def test_cutoff_not_below_the_catalogue(tmp_path, csv):
    _run_fails(tmp_path, base_cfg(csv, eval={"ks": [10, 30]}), "eval.ks", "cutoff 30")


def test_cutoff_not_below_the_candidates(tmp_path, csv):
    _run_fails(tmp_path, base_cfg(csv, split={"candidates": {"n_neg": 9}}, eval={"ks": [5, 10]}), "eval.ks", "10 candidates")


def test_no_user_with_three_interactions(tmp_path):
    csv = write_csv(tmp_path / "short.csv", length=2)
    _run_fails(tmp_path, base_cfg(csv), "no test example", "at least 3 interactions", error=DataError)


def test_session_filters_removing_everything(tmp_path, csv):
    d = base_cfg(csv, split={"protocol": "session", "session_min_length": 50})
    _run_fails(tmp_path, d, "split", "session")


# -- 2. data errors are typed and name file / line / field ----------------------------------------------
def test_missing_generic_file(tmp_path):
    d = base_cfg(tmp_path / "nope.csv")
    _run_fails(tmp_path, d, "nope.csv", "file not found", error=DataError)


@pytest.mark.parametrize("layout", ["empty_root", "root_is_a_file_folder"])
def test_data_root_pointing_at_the_wrong_folder(tmp_path, monkeypatch, layout):
    root = tmp_path / "datasets"
    root.mkdir()
    if layout == "root_is_a_file_folder":
        (root / "ml-100k").mkdir()  # the folder is there, the files are not
    monkeypatch.setenv("LLMREC_DATA", str(root))
    with pytest.raises(DataError) as ei:
        load_dataset(DataConfig(name="ml-100k"))
    check_error(ei.value, "u.data.gz", "file not found")


def test_generic_ids_are_trimmed(tmp_path):
    f = tmp_path / "sp.csv"
    f.write_text("user,item,timestamp\n7,1,10\n 7,2,20\n7 ,3,30\n8, 1,10\n8,1 ,20\n")
    ds = load_dataset(DataConfig(name="generic", generic={"interactions": str(f)}, use_cache=False))
    assert ds.n_users == 2 and ds.n_items == 3
    assert sorted(ds.user_ids) == ["7", "8"]


def _bad_timestamp_csv(path: Path, bad_row: int, value: str = "abc", n: int = 300) -> Path:
    lines = ["user,item,timestamp"]
    for r in range(n):
        lines.append(f"{r % 20},{r % 17},{value if r == bad_row else 1_600_000_000 + r}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("bad_row,value", [(0, "abc"), (150, "abc"), (299, "2020-01-01"), (42, "1.6e9"), (7, "")])
def test_one_bad_timestamp_is_reported_at_its_own_line(tmp_path, bad_row, value):
    f = _bad_timestamp_csv(tmp_path / "ts.csv", bad_row, value)
    for _ in range(2):  # the same line on every run
        with pytest.raises(DataError) as ei:
            load_dataset(DataConfig(name="generic", generic={"interactions": str(f)}, use_cache=False))
        check_error(ei.value, str(f), f"line {bad_row + 2}", "'timestamp'")
        assert ei.value.line == bad_row + 2


def test_mixed_integer_and_fractional_timestamps_load(tmp_path):
    f = tmp_path / "mixed.csv"
    f.write_text("user,item,timestamp\n1,1,100\n1,2,100.5\n1,3,200\n")
    ds = load_dataset(DataConfig(name="generic", generic={"interactions": str(f)}, use_cache=False))
    assert ds.seq_order.tolist() == [100, 100, 200]


def test_iso_column_with_a_bare_number_names_its_line(tmp_path):
    f = tmp_path / "iso.csv"
    f.write_text("user,item,timestamp\n1,1,2020-01-01T00:00:00Z\n1,2,2020-01-02\n1,3,20200103\n")
    with pytest.raises(DataError) as ei:
        load_dataset(DataConfig(name="generic", generic={"interactions": str(f)}, use_cache=False))
    assert ei.value.line == 4


def test_p5_error_keeps_its_brackets(tmp_path):
    d = tmp_path / "amazon-sports" / "p5_llm-recsys-id"
    d.mkdir(parents=True)
    (d / "sequential_data.txt.gz").write_bytes(gzip.compress(b"1 2 3\n2 x 4\n"))
    with pytest.raises(DataError) as ei:
        load_dataset(DataConfig(name="sports", path=str(tmp_path)))
    check_error(ei.value, "line 2", "[item_id ...]", "sequential_data.txt.gz")


# -- 3. damaged cache entries are rebuilt with a warning ------------------------------------------------
def _flip_byte(path: Path, pos: int) -> None:
    """Same size, one bit changed: only a checksum can tell."""
    b = bytearray(path.read_bytes())
    b[pos] ^= 1
    path.write_bytes(bytes(b))


def _entry(cache: Path) -> Path:
    (e,) = [p for p in (cache / "datasets").iterdir() if not p.name.startswith(".")]
    return e


DAMAGE = {
    "truncated_parquet": lambda e: (e / "interactions.parquet").write_bytes((e / "interactions.parquet").read_bytes()[:100]),
    "empty_items_parquet": lambda e: (e / "items.parquet").write_bytes(b""),
    "missing_parquet": lambda e: (e / "interactions.parquet").unlink(),
    "truncated_meta": lambda e: (e / "meta.json").write_text((e / "meta.json").read_text()[:50]),
    "empty_meta": lambda e: (e / "meta.json").write_text(""),
    "missing_meta": lambda e: (e / "meta.json").unlink(),
    "old_format_meta": lambda e: (e / "meta.json").write_text(json.dumps(
        {k: v for k, v in json.loads((e / "meta.json").read_text()).items() if k not in ("format", "checksums")})),
    "same_size_flip": lambda e: _flip_byte(e / "interactions.parquet", 200),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_entry_is_rebuilt_with_a_warning(tmp_path, csv, capsys, damage):
    cfg = DataConfig(name="generic", generic={"interactions": str(csv)}, cache_dir=str(tmp_path / "cache"))
    first = load_dataset(cfg)
    assert not first.info["from_cache"] and load_dataset(cfg).info["from_cache"]
    DAMAGE[damage](_entry(tmp_path / "cache"))
    capsys.readouterr()
    again = load_dataset(cfg)
    err = capsys.readouterr().err
    assert "warning:" in err and "damaged" in err and "rebuilding" in err
    assert not again.info["from_cache"]
    assert (again.seq_items == first.seq_items).all() and again.item_ids == first.item_ids
    assert load_dataset(cfg).info["from_cache"]  # and the rebuilt entry is good again
    assert "warning" not in capsys.readouterr().err


def test_temp_dirs_of_killed_cache_writes_are_removed(tmp_path, csv):
    cache = tmp_path / "cache"
    cfg = DataConfig(name="generic", generic={"interactions": str(csv)}, cache_dir=str(cache))
    load_dataset(cfg)
    entry = _entry(cache)
    shutil.rmtree(entry)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    import socket

    killed = cache / "datasets" / f".{entry.name}.killed1"
    killed.mkdir()
    (killed / ".writer").write_text(f"{socket.gethostname()} {int(dead.stdout)}")
    alive = cache / "datasets" / f".{entry.name}.alive1"
    alive.mkdir()
    (alive / ".writer").write_text(f"{socket.gethostname()} {os.getpid()}")  # a writer still at work: kept
    load_dataset(cfg)
    assert not killed.exists() and alive.exists() and (entry / "meta.json").exists()


# -- 3b. checkpoints: checksums, fallback to the last intact one, or an error naming the file -----------
@pytest.fixture(scope="module")
def toy_split():
    from conftest import make_raw, rng_sequences

    from llmrec.data.dataset import prepare_raw
    from llmrec.data.splits import leave_one_out

    return leave_one_out(prepare_raw(make_raw(rng_sequences(n_users=30, n_items=25, seed=3)), DataConfig(name="toy")))


FIT = {"epochs": 3, "batch_size": 16, "patience": None, "eval_every": 10, "progress": False}  # validation only at the end


@pytest.fixture(scope="module")
def crashed(toy_split, tmp_path_factory):
    """A reference fit of 3 epochs, and a fit that crashed after epoch 2 (pointer: last = 2, best = 1)."""
    from conftest import fit_until_crash

    from llmrec.models import build_model

    root = tmp_path_factory.mktemp("ckpt")
    ref = build_model("sasrec", TINY_SASREC).fit(toy_split, run_dir=root / "ref", **FIT)
    fit_until_crash(build_model("sasrec", TINY_SASREC), toy_split, root / "cut", 2, **FIT)
    assert ckpt.read_pointer(root / "cut" / "checkpoints") == {"last": "epoch-0002", "best": "epoch-0001"}
    return ref, root / "cut"


def _resume(toy_split, crashed, tmp_path, damage):
    from llmrec.models import build_model

    d = tmp_path / "cut"
    shutil.copytree(crashed[1], d)
    damage(d / "checkpoints")
    return build_model("sasrec", TINY_SASREC).fit(toy_split, run_dir=d, resume=True, **FIT)


def _same_weights(a, b) -> bool:
    return all(torch.equal(v, b.state_tensors()[k]) for k, v in a.state_tensors().items())


CKPT_FALLBACK = {
    "truncated_last_model": lambda c: (c / "epoch-0002" / "model.safetensors").write_bytes(
        (c / "epoch-0002" / "model.safetensors").read_bytes()[:64]),
    "flipped_last_optimizer": lambda c: _flip_byte(c / "epoch-0002" / "optimizer.safetensors", -5),
    "empty_last_state": lambda c: (c / "epoch-0002" / "state.json").write_text(""),
    "missing_last_rng": lambda c: (c / "epoch-0002" / "rng.safetensors").unlink(),
    "truncated_pointer": lambda c: (c / "latest.json").write_text('{"last": "epo'),
}


@pytest.mark.parametrize("damage", list(CKPT_FALLBACK))
def test_damaged_checkpoint_falls_back_to_the_last_intact_one(toy_split, crashed, tmp_path, capsys, damage):
    capsys.readouterr()
    m = _resume(toy_split, crashed, tmp_path, CKPT_FALLBACK[damage])
    err = capsys.readouterr().err
    assert "warning:" in err and "intact checkpoint" in err, err
    want = 2 if damage == "truncated_pointer" else 1  # the newest intact epoch
    assert m.fit_info["resumed_from_epoch"] == want
    assert _same_weights(m, crashed[0])  # the replayed epochs give exactly the uninterrupted result


def test_no_intact_checkpoint_fails_naming_the_file(toy_split, crashed, tmp_path):
    def damage(c):
        for e in ("epoch-0001", "epoch-0002"):
            (c / e / "model.safetensors").write_bytes(b"garbage")

    with pytest.raises(CheckpointError) as ei:
        _resume(toy_split, crashed, tmp_path, damage)
    check_error(ei.value, "model.safetensors", "checksum", "no intact checkpoint")


def test_damaged_pointer_without_checkpoints_fails_naming_it(tmp_path):
    c = tmp_path / "checkpoints"
    c.mkdir()
    (c / "latest.json").write_text("")
    with pytest.raises(CheckpointError) as ei:
        ckpt.load_checkpoint(c)
    check_error(ei.value, "latest.json", "damaged")


def test_checksums_are_in_the_checkpoint_state(crashed):
    st = json.loads((crashed[1] / "checkpoints" / "epoch-0002" / "state.json").read_text())
    assert set(st["checksums"]) == {"model.safetensors", "optimizer.safetensors", "rng.safetensors"}


def test_damaged_best_checkpoint_at_restore_names_the_file(tmp_path, crashed):
    c = tmp_path / "c"
    shutil.copytree(crashed[1] / "checkpoints", c)
    (c / "epoch-0001" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError) as ei:
        ckpt.load_model_tensors(c, "best")
    check_error(ei.value, "epoch-0001", "model.safetensors")


def test_resume_refused_names_the_key_that_differs(toy_split, crashed, tmp_path):
    from llmrec.models import build_model

    shutil.copytree(crashed[1], tmp_path / "cut")
    with pytest.raises(CheckpointError) as ei:
        build_model("sasrec", {**TINY_SASREC, "hidden": 16}).fit(toy_split, run_dir=tmp_path / "cut", resume=True, **FIT)
    check_error(ei.value, "cannot resume", "params.hidden: 8 in the checkpoint, 16 now", "epoch-0002")


# -- 4. the command line: plain-text messages, exit 2, no traceback (two through a real `python -m llmrec`) --
def test_cli_set_blame_and_brackets_are_printed_literally(tmp_path, csv):
    p = write_yaml(tmp_path / "c.yaml", base_cfg(csv))
    r = cli("run", str(p), "--set", "train.grad_clip=-1", "--set", "name='[/x]'")
    check_cli_error(r, "--set train.grad_clip=-1", "--set name='[/x]'", "got '[/x]'")


def test_cli_p5_error_keeps_brackets(tmp_path, capsys, monkeypatch):
    d = tmp_path / "amazon-toys" / "p5_rdrec"
    d.mkdir(parents=True)
    (d / "sequential.txt.gz").write_bytes(gzip.compress(b"1 2 3\n2 [/x] 4\n"))
    r = cli_in_process(capsys, monkeypatch, "data", "stats", "toys", "--path", str(tmp_path))
    check_cli_error(r, "line 2", "[item_id ...]", "'[/x]'")


def test_cli_wrong_data_root(tmp_path):
    (tmp_path / "empty").mkdir()
    p = write_yaml(tmp_path / "c.yaml", {"data": {"name": "ml-100k"}, "model": "pop"})
    r = cli("run", str(p), "--out", str(tmp_path / "run"), env={"LLMREC_DATA": str(tmp_path / "empty"),
                                                                 "LLMREC_CACHE": str(tmp_path / "cache")})
    check_cli_error(r, "u.data.gz", "file not found")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_cli_damaged_checkpoints_on_resume(tmp_path, csv, capsys, monkeypatch):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "latest.json").write_text('{"last": ')
    d = base_cfg(csv, model="sasrec", params=TINY_SASREC, train={"epochs": 1})
    r = cli_in_process(capsys, monkeypatch, "run", str(write_yaml(tmp_path / "c.yaml", d)), "--out", str(out), "--resume")
    check_cli_error(r, "latest.json", "damaged")
    assert not (out / "metrics.json").exists()


def test_cli_data_after_load_check(tmp_path, csv, capsys, monkeypatch):
    p = write_yaml(tmp_path / "c.yaml", base_cfg(csv, eval={"ks": [5, 100]}))
    r = cli_in_process(capsys, monkeypatch, "run", str(p), "--out", str(tmp_path / "run"))
    check_cli_error(r, str(p), "eval.ks", "cutoff 100")


def test_cli_brackets_in_names_are_printed_not_parsed(tmp_path, csv, capsys, monkeypatch):
    d = base_cfg(csv, name="[red]r", data={"name": "[bold]d"})
    r = cli_in_process(capsys, monkeypatch, "run", str(write_yaml(tmp_path / "c.yaml", d)), "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    assert "[red]r" in r.stdout and "[bold]d" in r.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["dataset"] == "[bold]d"
