"""The shared trainer: checkpoints (atomic, no pickle), resume, early stopping, accelerate, fit_info."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fit_until_crash, make_raw, rng_sequences
from llmrec.config import TrainConfig, load_config
from llmrec.data.dataset import DataConfig, prepare_raw
from llmrec.data.splits import leave_one_out
from llmrec.models import HistoryBatch, build_model
from llmrec.pipelines.run import run
from llmrec.training import checkpoint as ckpt

TINY_SASREC = {"hidden": 16, "max_len": 10, "loss": "ce", "dropout": 0.2}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture(scope="module")
def toy():
    return leave_one_out(prepare_raw(make_raw(rng_sequences(n_users=40, n_items=30, seed=1)), DataConfig(name="toy")))


def _csv(tmp_path: Path) -> Path:
    rows = rng_sequences(n_users=40, n_items=30, seed=2)
    f = tmp_path / "log.csv"
    f.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return f


def _cfg(csv: Path, *extra: str):
    sets = [
        "name=tiny", "data.name=generic", f"data.generic.interactions={csv}", "data.generic.user_col=user",
        "data.generic.item_col=item", "data.generic.time_col=timestamp", "model=sasrec",
        "params={hidden: 16, max_len: 10, loss: ce, dropout: 0.3}", "train.batch_size=8", "train.lr=0.005",
        "train.patience=null", "eval.ks=[5,10]", "progress=false", *extra,
    ]
    return load_config(None, sets)


# -- checkpoint pieces -------------------------------------------------------------------------------
def test_optimizer_state_roundtrip_without_pickle():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(3):
        net(torch.randn(5, 4)).sum().backward()
        opt.step()
        opt.zero_grad()
    tensors, meta = ckpt.flatten_optimizer(opt.state_dict())
    json.dumps(meta)  # the structure is plain JSON
    back = ckpt.unflatten_optimizer(tensors, json.loads(json.dumps(ckpt._to_json(meta))))
    opt2 = torch.optim.AdamW(net.parameters(), lr=1.0)
    opt2.load_state_dict(back)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid in a["state"]:
        for k, v in a["state"][pid].items():
            assert torch.equal(v, b["state"][pid][k])


def test_rng_state_roundtrip():
    import random

    g = torch.Generator().manual_seed(3)
    tensors, meta = ckpt.rng_state(g)
    meta = json.loads(json.dumps(ckpt._to_json(meta)))
    want = (torch.rand(3), np.random.rand(2), random.random(), torch.rand(2, generator=g))
    torch.manual_seed(99), np.random.seed(99), random.seed(99), g.manual_seed(99)
    ckpt.set_rng_state(tensors, ckpt._from_json(meta), g)
    got = (torch.rand(3), np.random.rand(2), random.random(), torch.rand(2, generator=g))
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]
    assert torch.equal(want[3], got[3])


def test_checkpoints_keep_last_and_best(toy, tmp_path):
    m = build_model("sasrec", TINY_SASREC)
    m.fit(toy, run_dir=tmp_path, epochs=4, batch_size=8, patience=None, progress=False)
    root = tmp_path / "checkpoints"
    ptr = json.loads((root / "latest.json").read_text())
    assert ptr["last"] == "epoch-0004" and ptr["best"] == f"epoch-{m.fit_info['best_epoch']:04d}"
    dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert dirs == sorted({ptr["last"], ptr["best"]})  # nothing else kept, no temporary leftovers
    for d in dirs:
        files = sorted(p.name for p in (root / d).iterdir())
        assert files == ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert b"\x80\x04" not in p.read_bytes()[:2], f"{p} looks like a pickle"
    assert (tmp_path / "train_log.jsonl").read_text().count("\n") == 4


# -- resume --------------------------------------------------------------------------------------------
def test_resume_through_the_pipeline_gives_identical_metrics(tmp_path):
    csv = _csv(tmp_path)
    full = run(_cfg(csv, "train.epochs=3"), tmp_path / "full")
    # "interrupted" after epoch 1: a run that stopped there, then --resume with the real epoch budget
    run(_cfg(csv, "train.epochs=1"), tmp_path / "cut")
    resumed = run(_cfg(csv, "train.epochs=3"), tmp_path / "cut", resume=True)
    assert resumed["fit_info"]["resumed_from_epoch"] == 1
    assert resumed["metrics"]["test"] == full["metrics"]["test"]
    assert resumed["metrics"]["valid"] == full["metrics"]["valid"]
    assert resumed["fit_info"]["history"] == [
        {**h, "seconds": r["seconds"], "valid_seconds": r["valid_seconds"]}
        for h, r in zip(full["fit_info"]["history"], resumed["fit_info"]["history"])
    ]


def test_resume_after_a_crash_is_bitwise_identical(toy, tmp_path):
    kw = dict(epochs=3, batch_size=8, patience=None, progress=False)
    ref = build_model("sasrec", TINY_SASREC).fit(toy, run_dir=tmp_path / "ref", **kw)
    fit_until_crash(build_model("sasrec", TINY_SASREC), toy, tmp_path / "cut", 1, **kw)
    # a temporary directory of an interrupted write would be ignored: simulate one
    (tmp_path / "cut" / "checkpoints" / ".epoch-0002.tmp").mkdir()
    again = build_model("sasrec", TINY_SASREC).fit(toy, run_dir=tmp_path / "cut", resume=True, **kw)
    b = HistoryBatch(toy.test.users, toy.test.histories)
    assert torch.equal(ref.score(b), again.score(b))
    for k, v in ref.state_tensors().items():
        assert torch.equal(v, again.state_tensors()[k]), k


def test_resume_refuses_a_different_model(toy, tmp_path):
    build_model("sasrec", TINY_SASREC).fit(toy, run_dir=tmp_path, epochs=1, progress=False)
    with pytest.raises(ValueError, match="cannot resume"):
        build_model("sasrec", {**TINY_SASREC, "hidden": 8}).fit(toy, run_dir=tmp_path, resume=True, epochs=2, progress=False)


# -- early stopping ----------------------------------------------------------------------------------
@pytest.mark.parametrize("with_dir", [True, False])
def test_early_stopping_restores_the_best_weights(toy, tmp_path, monkeypatch, with_dir):
    import llmrec.evaluation.evaluator as ev

    script = iter([0.10, 0.30, 0.20, 0.25, 0.50, 0.60])

    def fake_evaluate(model, eval_set, **kw):
        v = next(script)
        return {"metrics": {"HR@10": v, "NDCG@10": v}, "n": len(eval_set), "seconds": 0.0}

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    snapshots = {}

    def keep(model, epoch, info):
        snapshots[epoch] = {k: v.clone() for k, v in model.state_tensors().items()}

    m = build_model("sasrec", TINY_SASREC)
    m.fit(toy, run_dir=tmp_path if with_dir else None, epochs=6, patience=2, batch_size=8, callbacks=[keep], progress=False)
    fi = m.fit_info
    assert fi["stopped_early"] and fi["epochs_run"] == 4 and fi["best_epoch"] == 2 and fi["best_valid"] == 0.30
    assert len(fi["seconds_per_epoch"]) == 4
    for k, v in m.state_tensors().items():
        assert torch.equal(v, snapshots[2][k]), k
    assert not all(torch.equal(v, snapshots[4][k]) for k, v in m.state_tensors().items())


def test_fit_info_and_max_eval_users(toy):
    m = build_model("gru4rec", {"hidden": 8, "max_len": 5}).fit(toy, epochs=2, max_eval_users=10, progress=False)
    fi = m.fit_info
    assert fi["valid_users"] == 10 and fi["epochs_run"] == 2 and not fi["stopped_early"]
    assert set(fi) >= {"epochs_run", "best_epoch", "best_valid", "seconds_per_epoch", "stopped_early"}
    assert fi["device"] == "cpu" and fi["num_processes"] == 1


def test_library_use_without_config_uses_trainconfig_defaults(toy):
    m = build_model("bpr", {"dim": 8})
    from llmrec.training.trainer import Trainer

    t = Trainer.from_config(m, toy, None)
    assert t.cfg == TrainConfig() and t.seed == 42
    t2 = Trainer.from_config(m, toy, None, epochs=2, lr=0.1)
    assert t2.cfg.epochs == 2 and t2.cfg.lr == 0.1


# -- accelerate ----------------------------------------------------------------------------------------
def test_accelerate_cpu_one_process_matches_plain_loop(toy):
    pytest.importorskip("accelerate")
    from accelerate import Accelerator

    kw = dict(epochs=2, batch_size=8, patience=None, progress=False)
    plain = build_model("sasrec", TINY_SASREC).fit(toy, **kw)
    acc = build_model("sasrec", TINY_SASREC).fit(toy, accelerator=Accelerator(cpu=True), **kw)
    assert acc.fit_info["num_processes"] == 1 and acc.fit_info["device"] == "cpu"
    b = HistoryBatch(toy.test.users, toy.test.histories)
    assert torch.allclose(plain.score(b), acc.score(b), atol=1e-5)
    assert [h["loss"] for h in plain.fit_info["history"]] == pytest.approx([h["loss"] for h in acc.fit_info["history"]], rel=1e-5)


@pytest.mark.skipif(os.environ.get("LLMREC_SLOW_TESTS") != "1", reason="spawns `accelerate launch` (set LLMREC_SLOW_TESTS=1)")
def test_accelerate_launch_subprocess(tmp_path):
    pytest.importorskip("accelerate")
    csv = _csv(tmp_path)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(_cfg(csv, "train.epochs=1").to_yaml())
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "LLMREC_PROGRESS": "0"}
    out = subprocess.run(
        [str(launcher), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "llmrec", "run", str(cfg), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["fit_info"]["num_processes"] == 1 and m["fit_info"]["epochs_run"] == 1


def test_time_budget_stops_after_the_epoch_that_spends_it(tmp_path):
    out = run(_cfg(_csv(tmp_path), "train.epochs=5", "train.max_minutes=1e-9"), tmp_path / "run")
    info = out["fit_info"]
    assert info["epochs_run"] == 1 and info["stopped_by_budget"] is True and info["max_minutes"] == 1e-9
    assert not info["stopped_early"] and info["best_epoch"] == 1
    out2 = run(_cfg(_csv(tmp_path), "train.epochs=2"), tmp_path / "run2")
    assert out2["fit_info"]["epochs_run"] == 2 and out2["fit_info"]["stopped_by_budget"] is False


def test_pad_rows_is_the_one_padding():
    from llmrec.utils.padding import pad_rows

    seqs = [np.array([1, 2, 3]), np.array([], dtype=np.int64), [7]]
    out, lens = pad_rows(seqs)
    assert out.tolist() == [[1, 2, 3], [0, 0, 0], [7, 0, 0]] and lens.tolist() == [3, 0, 1]
    out, lens = pad_rows(seqs, 2, pad=-1, shift=10, align="right")  # the last 2 items, ending at the last column
    assert out.tolist() == [[12, 13], [-1, -1], [-1, 17]] and lens.tolist() == [2, 0, 1]
    assert pad_rows([[]])[0].tolist() == [[0]] and pad_rows([], 3)[0].shape == (0, 3)


# -- data parallel: torchrun, 2 CPU processes (gloo) ---------------------------------------------------
def test_two_processes_follow_one(tmp_path):
    """2 processes with the same *global* batch (train.batch_size) take the same steps as 1: per-epoch loss
    within 1e-5 relative (measured: ~1e-7, float summation order), same final scores within 1e-3.

    Rows of unequal length, so each rank's loss averages a different number of positions: the trainer weights
    ranks by ``loss_weight`` -- without it the curves part by ~1e-3 after 3 epochs. Dropout 0: dropout masks
    are per process."""
    pytest.importorskip("accelerate")
    rows = rng_sequences(n_users=61, n_items=50, min_len=3, max_len=20, seed=5)
    csv = tmp_path / "log.csv"
    csv.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    cfg = _cfg(csv, "train.epochs=3", "train.batch_size=16", "params={hidden: 16, max_len: 12, loss: ce, dropout: 0.0}",
               "threads=1")
    (tmp_path / "dp.yaml").write_text(cfg.to_yaml())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMREC_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "llmrec", "run", str(tmp_path / "dp.yaml"), "--out", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())  # written by rank 0 only
    one = run(cfg, tmp_path / "one")
    f2, f1 = two["fit_info"], one["fit_info"]
    assert f2["num_processes"] == 2 and f1["num_processes"] == 1
    assert [h["steps"] for h in f2["history"]] == [h["steps"] for h in f1["history"]] == [4, 4, 4]
    assert [h["loss"] for h in f2["history"]] == pytest.approx([h["loss"] for h in f1["history"]], rel=1e-5)
    assert len((tmp_path / "two" / "train_log.jsonl").read_text().splitlines()) == 3  # one writer
    from llmrec.models.base import Recommender

    m1, m2 = Recommender.load(tmp_path / "one" / "model"), Recommender.load(tmp_path / "two" / "model")
    users = np.arange(10)
    b = HistoryBatch(users, [np.arange(1, 6)] * 10)
    assert torch.allclose(m1.score(b), m2.score(b), rtol=1e-3, atol=1e-4)
