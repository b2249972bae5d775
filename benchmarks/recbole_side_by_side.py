#!/usr/bin/env python
"""llmrec vs RecBole 1.2.1, side by side: the same data, split, model sizes, epochs and threads.

    .venv/bin/python benchmarks/recbole_side_by_side.py                       # ml-100k + beauty, sasrec + gru4rec
    .venv/bin/python benchmarks/recbole_side_by_side.py --epochs 2 --datasets ml-100k --tag quick   # minutes
    .venv/bin/python benchmarks/recbole_side_by_side.py --setup-only          # just build the RecBole venv
    .venv/bin/python benchmarks/recbole_side_by_side.py --table benchmarks/results/recbole_side_by_side.json

What it does, in one run:

1. Builds RecBole's own virtual environment ``benchmarks/.venv-recbole`` (gitignored) if it is missing:
   ``torch==2.13.0`` (the CPU wheel; unpinned, pip would fetch CUDA), ``recbole==1.2.1`` and the pins it needs
   to import on Python 3.11: ``numpy<2``, ``pandas<2.3``, ``scipy<1.14``, ``setuptools<81`` (ray 2.6 imports
   ``pkg_resources`` and uses ``np.bool8``). RecBole is never installed into llmrec's environment.
2. Prepares each dataset with llmrec (random item ids, the stable chronological sort) and exports it with
   ``llmrec.data.export`` (RecBole atomic files whose LS / TO split is exactly llmrec's leave-one-out).
3. For each model, runs, each in its own subprocess (so peak RSS — ``ru_maxrss`` from ``os.wait4`` — is per
   system):
   * ``llmrec run`` with a generated config, history masking **on** (llmrec's default);
   * ``llmrec run`` with history masking **off** (what RecBole does for sequential models);
   * RecBole (its own Trainer, full-sort evaluation, no history masking, ties broken by item index order
     by ``torch.topk``), run by this same file in worker mode inside the RecBole venv.
   Both train exactly ``--epochs`` epochs (no early stopping), validate every epoch on NDCG@10 and test the best
   validation epoch. Torch threads = ``--threads`` on both sides (and OMP/MKL env vars).
   With ``--patience N`` both stop early instead (RecBole ``stopping_step`` = llmrec ``train.patience`` = N,
   ``--epochs`` the cap): the time-to-quality run.
4. Writes ``benchmarks/results/recbole_side_by_side[-TAG].json`` and prints a Markdown table for BENCHMARKS.md.
   Time to quality (every run, per dataset and model): RecBole's best validation NDCG@10 and its train+valid
   seconds to reach that epoch, llmrec's (history unmasked, as RecBole validates) train+valid seconds to the first
   epoch whose validation NDCG@10 reaches the same value, and their quotient ``time_to_quality_ratio`` (null when
   llmrec never reached it: its best is written beside).

Time to quality on ml-100k (RecBole needs hours here; it resumes): the first command runs all three, the second
continues an interrupted RecBole run after its last finished epoch and keeps the llmrec rows (``--append``)::

    .venv/bin/python benchmarks/recbole_side_by_side.py --datasets ml-100k --models sasrec --epochs 400 --patience 10 \
        --threads 1 --llmrec-batch-size 16 --tag ttq-ml100k
    .venv/bin/python benchmarks/recbole_side_by_side.py --datasets ml-100k --models sasrec --epochs 400 --patience 10 \
        --threads 1 --llmrec-batch-size 16 --tag ttq-ml100k --systems recbole --append

llmrec's SASRec written as RecBole's (post-LN blocks, no sqrt(d) embedding scale, positions from the start; with
``window_stride=1`` the exact one-row-per-prefix objective, larger strides share a forward pass among targets), and
ml-1m, whose RecBole run takes ~7 minutes an epoch on one core (resume the same way)::

    .venv/bin/python benchmarks/recbole_side_by_side.py --datasets ml-100k --models sasrec --epochs 400 --patience 10 \
        --threads 1 --systems llmrec-unmasked --llmrec-batch-size 2048 --llmrec-param block=bert \
        --llmrec-param emb_scale=false --llmrec-param positions=from_start --llmrec-param train_windows=all \
        --llmrec-param window_stride=1 --tag ttq-ml100k-bert-s1
    .venv/bin/python benchmarks/recbole_side_by_side.py --datasets ml-1m --models sasrec --epochs 400 --patience 10 \
        --threads 1 --systems recbole --tag ttq-ml1m

RecBole 1.2.1 switches torch's autograd anomaly detection on for the whole process when its sequential models are
imported (``recbole/model/sequential_recommender/sine.py``): measured here, a SASRec batch of 2,048 rows took
10.6-12.2 s with it and 6.7-6.8 s without (1 thread, loaded machine). The worker switches it off after import, as a
user who noticed would (the fair baseline); ``--recbole-as-shipped`` keeps it. Results record both states.

What "an epoch" means differs, and the table says so: RecBole trains sequential models on every prefix of every
training sequence (one row per target, ``--batch-size`` rows per batch); llmrec's SASRec / GRU4Rec train on
whole sequences with a loss at every position (``--llmrec-batch-size`` users per batch). Both see every
training target once per epoch; RecBole takes many more optimizer steps to do it.

Matched hyper-parameters (RecBole name = llmrec name): hidden_size = hidden 64, n_layers = blocks 2,
n_heads = heads 2, inner_size = 64 (llmrec's feed-forward is d x d, as in the SASRec paper), hidden_act relu,
hidden/attn dropout = dropout 0.5, MAX_ITEM_LIST_LENGTH = max_len 50, loss CE over all items, Adam lr 1e-3,
no weight decay, no gradient clipping. Remaining architectural difference: RecBole's SASRec is post-LN (BERT
style), llmrec's pre-LN (the paper's). GRU4Rec: embedding_size = hidden_size = hidden 64 (llmrec ties the GRU
size to the item embedding, "constrained embedding"; RecBole adds a dense layer from GRU state to embedding),
num_layers = layers 1, dropout 0.3 (RecBole: on the input embeddings; llmrec: on input and output), CE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from recbole_report import markdown_table, print_ttq, summarize, time_to_quality, ttq_table  # noqa: E402  (benchmarks/)

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "benchmarks" / ".venv-recbole"
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "runs" / "bench-recbole"
PINS = ["torch==2.13.0", "recbole==1.2.1", "numpy<2", "pandas<2.3", "scipy<1.14", "setuptools<81"]
RECBOLE_MODELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}


# ----------------------------------------------------------------------------------------------------
# configuration of both sides


def recbole_params(model: str) -> dict:
    if model == "sasrec":
        return {"n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 64, "hidden_dropout_prob": 0.5,
                "attn_dropout_prob": 0.5, "hidden_act": "relu", "layer_norm_eps": 1e-12, "initializer_range": 0.02,
                "loss_type": "CE"}
    if model == "gru4rec":
        return {"embedding_size": 64, "hidden_size": 64, "num_layers": 1, "dropout_prob": 0.3, "loss_type": "CE"}
    raise ValueError(model)


def llmrec_params(model: str) -> dict:
    """llmrec params matching recbole_params(model), restricted to what the model's Params class accepts."""
    from llmrec.models import get_model_class

    fields = set(get_model_class(model).Params.model_fields)
    if model == "sasrec":
        want = {"max_len": 50, "hidden": 64, "blocks": 2, "heads": 2, "dropout": 0.5, "loss": "ce"}
    elif model == "gru4rec":
        want = {"max_len": 50, "hidden": 64, "layers": 1, "dropout": 0.3}
    else:
        raise ValueError(model)
    return {k: v for k, v in want.items() if k in fields}


def _key_values(pairs: list[str]) -> dict:
    """KEY=VALUE strings -> {KEY: the YAML value}."""
    import yaml

    return {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in pairs)}


def llmrec_extra(a) -> dict:
    """--llmrec-param pairs, added to llmrec's matched params (e.g. train_windows=all)."""
    return _key_values(a.llmrec_param)


def llmrec_train_extra(a) -> dict:
    """--llmrec-train pairs: llmrec train.* settings beyond the matched ones (e.g. mixed_precision=bf16)."""
    return _key_values(a.llmrec_train)


def llmrec_config(ds: str, model: str, mask: bool, a) -> dict:
    extra, train_extra = llmrec_extra(a), llmrec_train_extra(a)
    tail = "".join(f"-{k}-{v}" for k, v in {**extra, **{f"train.{k}": v for k, v in train_extra.items()}}.items())
    return {
        "name": f"bench-{ds}-{model}-{'masked' if mask else 'unmasked'}{tail}",
        "data": {"name": ds, "id_order": "random"},
        "split": {"protocol": "loo"},
        "model": model,
        "params": {**llmrec_params(model), **extra},
        "train": {"epochs": a.epochs, "batch_size": a.llmrec_batch_size, "lr": 1e-3, "weight_decay": 0.0,
                  "grad_clip": None, "patience": a.patience, "monitor": "NDCG@10", "betas": [0.9, 0.999], **train_extra},
        "eval": {"ks": [10], "mask_history": mask},
        "seed": a.seed,
        "threads": a.threads,
        "progress": False,
    }


def recbole_config(model: str, a, ckpt_dir: Path) -> dict:
    return {
        **recbole_params(model),
        "epochs": a.epochs, "train_batch_size": a.batch_size, "eval_batch_size": 4096, "learning_rate": 1e-3,
        "weight_decay": 0.0, "clip_grad_norm": None, "train_neg_sample_args": None,
        "eval_step": 1, "stopping_step": a.patience or a.epochs + 1, "valid_metric": "NDCG@10",
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "metric_decimal_place": 6,
        "MAX_ITEM_LIST_LENGTH": 50, "seed": a.seed, "reproducibility": True, "use_gpu": False, "worker": 0,
        "show_progress": False, "checkpoint_dir": str(ckpt_dir), "state": "WARNING",
    }


# ----------------------------------------------------------------------------------------------------
# RecBole side (runs inside benchmarks/.venv-recbole)


def _safe(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - descriptive extras only
        return None


def recbole_worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    import torch

    torch.set_num_threads(spec["threads"])
    t_start = time.perf_counter()
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    import_s = time.perf_counter() - t_start
    config = Config(model=spec["recbole_model"], config_file_list=[spec["data_yaml"]], config_dict=spec["config"])
    init_seed(config["seed"], config["reproducibility"])
    t = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    load_s = time.perf_counter() - t
    init_seed(config["seed"] + (config["local_rank"] or 0), config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    # RecBole 1.2.1 switches torch's autograd anomaly detection on for the whole process when its sequential models
    # are imported (recbole/model/sequential_recommender/sine.py, module level): every backward then records and
    # checks each op. The benchmark records that state and, unless --recbole-as-shipped, switches it off again.
    anomaly_at_import = torch.is_anomaly_enabled()
    torch.autograd.set_detect_anomaly(bool(spec.get("detect_anomaly", False)))
    train_s, valid_s, valid_scores = [], [], []

    base = get_trainer(config["MODEL_TYPE"], config["model"])

    class Timed(base):
        def _train_epoch(self, *a, **k):
            t0 = time.perf_counter()
            r = super()._train_epoch(*a, **k)
            train_s.append(time.perf_counter() - t0)
            return r

        def _valid_epoch(self, *a, **k):
            t0 = time.perf_counter()
            r = super()._valid_epoch(*a, **k)
            valid_s.append(time.perf_counter() - t0)
            valid_scores.append(float(r[0]))
            return r

    trainer = Timed(config, model)
    # Resumable (a run to convergence can outlast a session): after every epoch the trainer's state goes to
    # ckpt/latest.pth and the timings to result.partial.json, the checkpoint first, both by rename; a later call
    # with the same spec continues after the last finished epoch (RNG streams restart: not bit-identical).
    partial_path = Path(spec["out"]).with_suffix(".partial.json")
    latest = Path(config["checkpoint_dir"]) / "latest.pth"
    resumed_at = None
    prev = json.loads(partial_path.read_text()) if partial_path.exists() and latest.exists() else None
    if prev is not None and prev.get("spec") != spec:  # another configuration: start afresh
        prev = None
    if prev is not None:
        train_s[:], valid_s[:], valid_scores[:] = prev["seconds_per_epoch"], prev["valid_seconds"], prev["valid_ndcg10"]
        trainer.resume_checkpoint(latest)
        trainer.saved_model_file = prev["best_model_file"]  # resume_checkpoint points it at latest.pth
        resumed_at = trainer.start_epoch
        assert trainer.start_epoch == len(valid_scores), (trainer.start_epoch, len(valid_scores))

    def after_epoch(epoch_idx, valid_score):
        tmp = latest.with_suffix(".tmp")
        trainer._save_checkpoint(epoch_idx, verbose=False, saved_model_file=str(tmp))
        os.replace(tmp, latest)
        part = {"seconds_per_epoch": train_s, "valid_seconds": valid_s, "valid_ndcg10": valid_scores,
                "load_and_split_seconds": load_s, "import_seconds": import_s, "best_model_file": trainer.saved_model_file,
                "stopped": trainer.cur_step > trainer.stopping_step, "spec": spec, "partial": True}
        partial_path.with_suffix(".tmp").write_text(json.dumps(part))
        os.replace(partial_path.with_suffix(".tmp"), partial_path)

    t = time.perf_counter()
    if not (resumed_at is not None and (prev.get("stopped") or resumed_at >= config["epochs"])):
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=after_epoch)
    fit_s = time.perf_counter() - t
    test = {k.lower(): float(v) for k, v in trainer.evaluate(test_data, load_best_model=True, show_progress=False).items()}
    t = time.perf_counter()
    trainer.evaluate(test_data, load_best_model=False, show_progress=False)  # timed: evaluation only
    test_s = time.perf_counter() - t
    out = {
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "import_seconds": import_s,
        "load_and_split_seconds": load_s,
        "fit_seconds": fit_s,
        "resumed_at_epoch": resumed_at,
        "seconds_per_epoch": train_s,
        "valid_seconds": valid_s,
        "valid_ndcg10": valid_scores,
        "best_epoch": 1 + max(range(len(valid_scores)), key=lambda i: valid_scores[i]) if valid_scores else None,
        "eval_test_seconds": test_s,
        "test": {"HR@10": test.get("hit@10"), "NDCG@10": test.get("ndcg@10"), "MRR@10": test.get("mrr@10")},
        "test_raw": test,
        "train_rows": _safe(lambda: len(train_data._dataset)),
        "train_batches_per_epoch": _safe(lambda: len(train_data)),
        "test_users": _safe(lambda: len(test_data._dataset)),
        "n_items": _safe(lambda: dataset.item_num - 1),
        "mask_history": False,
        "ties": "torch.topk (index order)",
        "anomaly_detection_after_import": anomaly_at_import,
        "anomaly_detection": torch.is_anomaly_enabled(),
    }
    Path(spec["out"]).write_text(json.dumps(out, indent=2))


# ----------------------------------------------------------------------------------------------------
# orchestration (llmrec's venv)


def run_measured(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd`` as a child; return exit code, wall seconds and the child's own peak RSS (os.wait4)."""
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_seconds": time.perf_counter() - t, "peak_rss_mb": ru.ru_maxrss / 1024,
            "cpu_seconds": ru.ru_utime + ru.ru_stime, "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def setup_venv(venv: Path = VENV) -> Path:
    py = venv / "bin" / "python"
    if py.exists():
        r = subprocess.run([str(py), "-c", "import recbole, torch, numpy, pandas"], capture_output=True)
        if r.returncode == 0:
            return py
    print(f"building {venv} (pip: {' '.join(PINS)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PINS], check=True)
    subprocess.run([str(py), "-c", "import recbole.quick_start"], check=True)  # imports ray: the fragile part
    return py


def pip_versions(py: Path, pkgs: list[str]) -> dict:
    code = ("import importlib.metadata as m, json, sys\nout = {}\nfor p in sys.argv[1:]:\n"
            "    try:\n        out[p] = m.version(p)\n    except m.PackageNotFoundError:\n        out[p] = None\n"
            "print(json.dumps(out))")
    try:
        r = subprocess.run([str(py), "-c", code, *pkgs], capture_output=True, text=True, check=True)
        return json.loads(r.stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):  # versions are informative only
        return {}


def machine() -> dict:
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def thread_env(n: int, wait_policy: str = "") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n), "LLMREC_PROGRESS": "0",
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    return env


def run_llmrec(ds: str, model: str, mask: bool, a, work: Path) -> dict:
    import yaml

    cfg = llmrec_config(ds, model, mask, a)
    from llmrec.config import load_config

    cdir = work / "configs"
    cdir.mkdir(parents=True, exist_ok=True)
    path = cdir / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    load_config(path)  # validate here, before the subprocess
    out = work / "llmrec" / cfg["name"]
    # an interrupted run (checkpoints, no metrics.json) continues after its last finished epoch (each epoch keeps its
    # own seconds, so time to quality still adds up); a finished one is measured again
    again = "--resume" if (out / "checkpoints").is_dir() and not (out / "metrics.json").exists() else "--overwrite"
    meas = run_measured([sys.executable, "-m", "llmrec", "run", str(path), "--out", str(out), again],
                        work / "logs" / f"{cfg['name']}.log", env=thread_env(a.threads, a.omp_wait_policy))
    rec = {"system": "llmrec", "dataset": ds, "model": model, "mask_history": mask, "llmrec_params": llmrec_extra(a) or None,
           "llmrec_train": llmrec_train_extra(a) or None,
           "config": str(path.relative_to(REPO)),
           "run_dir": str(out.relative_to(REPO)), **meas}
    if meas["rc"] != 0:
        rec["error"] = (work / "logs" / f"{cfg['name']}.log").read_text()[-2000:]
        return rec
    m = json.loads((out / "metrics.json").read_text())
    fi = m.get("fit_info") or {}
    rec.update({
        "llmrec_version": m.get("llmrec_version"), "git_commit": m.get("git_commit"), "threads": m.get("threads"),
        "seconds_per_epoch": fi.get("seconds_per_epoch"), "valid_seconds": fi.get("valid_seconds"),
        "best_epoch": fi.get("best_epoch"), "eval_test_seconds": m["seconds"].get("eval_test"),
        "resumed_from_epoch": fi.get("resumed_from_epoch"),
        "load_and_split_seconds": m["seconds"].get("load_and_split"), "fit_seconds": m["seconds"].get("fit"),
        "test": {k: m["metrics"]["test"].get(k) for k in ("HR@10", "NDCG@10", "MRR@10")},
        "test_users": m["split_sizes"].get("test_examples"),
        "valid_ndcg10": [(h.get("valid") or {}).get("NDCG@10") for h in fi.get("history") or []],
        "ties": "pessimistic",
    })
    if not mask:  # the same model's test with history masked too (llmrec's default protocol), without a second run
        rec["test_history_masked_same_model"] = _test_masked(path, out / "model")
    return rec


def _test_masked(config: Path, model_dir: Path) -> dict:
    from llmrec.evaluation.evaluator import evaluate
    from llmrec.models.base import Recommender
    from llmrec.pipelines.run import load_split

    _, _, split = load_split(config)
    r = evaluate(Recommender.load(model_dir), split.test, ks=[10], mask_history=True, progress=False)["metrics"]
    return {k: r.get(k) for k in ("HR@10", "NDCG@10", "MRR@10")}


def run_recbole(ds: str, model: str, a, work: Path, py: Path, export_dir: Path) -> dict:
    name = f"recbole-{ds}-{model}"
    wdir = work / "recbole" / name
    wdir.mkdir(parents=True, exist_ok=True)
    spec = {"recbole_model": RECBOLE_MODELS[model], "data_yaml": str(export_dir / f"{ds}.yaml"),
            "config": recbole_config(model, a, wdir / "ckpt"), "threads": a.threads, "out": str(wdir / "result.json"),
            "detect_anomaly": a.recbole_as_shipped}
    (wdir / "spec.json").write_text(json.dumps(spec, indent=2))
    meas = run_measured([str(py), str(Path(__file__).resolve()), "--recbole-worker", str(wdir / "spec.json")],
                        work / "logs" / f"{name}.log", env=thread_env(a.threads, a.omp_wait_policy), cwd=wdir)
    rec = {"system": "recbole", "dataset": ds, "model": model, "mask_history": False,
           "config": spec["config"], **meas}
    if meas["rc"] != 0:
        rec["error"] = (work / "logs" / f"{name}.log").read_text()[-2000:]
        partial = wdir / "result.partial.json"
        if partial.exists():
            rec.update(json.loads(partial.read_text()))
        return rec
    rec.update(json.loads((wdir / "result.json").read_text()))
    return rec


def _llmrec_has(model: str) -> bool:
    from llmrec.models import get_model_class

    try:
        get_model_class(model)
        return True
    except (KeyError, ImportError):
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="ml-100k,beauty", help="comma-separated llmrec dataset names")
    ap.add_argument("--models", default="sasrec,gru4rec", help="comma-separated: sasrec, gru4rec")
    ap.add_argument("--epochs", type=int, default=20, help="training epochs on both sides (the cap with --patience)")
    ap.add_argument("--patience", type=int, default=None,
                    help="early stopping on validation NDCG@10 on both sides after N epochs without a gain (time to quality)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    ap.add_argument("--batch-size", type=int, default=2048, help="RecBole train_batch_size (prefix rows; RecBole's default)")
    ap.add_argument("--llmrec-batch-size", type=int, default=128, help="llmrec train.batch_size (users)")
    ap.add_argument("--llmrec-param", action="append", default=[], metavar="KEY=VALUE",
                    help="extra llmrec model params (repeatable), e.g. train_windows=all; a separate row per setting")
    ap.add_argument("--llmrec-train", action="append", default=[], metavar="KEY=VALUE",
                    help="llmrec train.KEY (YAML value) beyond the matched settings, e.g. ema=0.99; repeatable")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="OMP_WAIT_POLICY for both systems ('' = unset). PASSIVE: on a shared, oversubscribed machine "
                         "spinning OpenMP threads made a SASRec step 2-3x slower")
    ap.add_argument("--systems", default="llmrec-masked,llmrec-unmasked,recbole", help="which runs to do")
    ap.add_argument("--tag", default="", help="results file suffix: recbole_side_by_side-TAG.json")
    ap.add_argument("--append", action="store_true",
                    help="keep the runs already in the results file (a rerun of the same dataset/model/system replaces its entry)")
    ap.add_argument("--recbole-as-shipped", action="store_true",
                    help="keep the autograd anomaly detection RecBole 1.2.1 switches on at import (slower backward)")
    ap.add_argument("--setup-only", action="store_true", help="only build benchmarks/.venv-recbole")
    ap.add_argument("--table", type=Path, nargs="+", help="print the Markdown table of existing results files and exit")
    ap.add_argument("--merge-out", type=Path, help="with --table: write the merged runs and their time to quality here")
    ap.add_argument("--recbole-worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.recbole_worker:
        recbole_worker(a.recbole_worker)
        return 0
    if a.table:
        merged = {"runs": []}
        sources = []  # a merged file given again stands for the files it was merged from
        for t in a.table:
            d = json.loads(t.read_text())
            merged["runs"] += [{"epochs": d.get("epochs"), "seed": d.get("seed"), **r} for r in d["runs"]]
            sources += d.get("merged_from") or [t.name]
        print(markdown_table(merged))
        merged["time_to_quality"] = time_to_quality(merged["runs"])
        print_ttq(merged)
        print("\n" + ttq_table(merged))
        if a.merge_out:  # one file holding the runs of several (e.g. RecBole's and llmrec variants run apart)
            merged.update({"benchmark": "recbole_side_by_side", "merged_from": sources,
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            a.merge_out.write_text(json.dumps(merged, indent=2, default=str))
            print(f"\nwrote {a.merge_out}")
        return 0
    systems = set(a.systems.split(","))
    py = setup_venv() if ("recbole" in systems or a.setup_only) else None
    if a.setup_only:
        print(f"RecBole venv ready: {py}")
        return 0

    import llmrec
    from llmrec.data.dataset import load_dataset
    from llmrec.data.export import export_recbole

    tag = f"-{a.tag}" if a.tag else ""
    work = WORK / (a.tag or "default")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = RESULTS / f"recbole_side_by_side{tag}.json"
    res = {
        "benchmark": "recbole_side_by_side",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "threads": a.threads,
        "epochs": a.epochs,
        "patience": a.patience,
        "batch_size": {"recbole_rows": a.batch_size, "llmrec_users": a.llmrec_batch_size},
        "seed": a.seed,
        "omp_wait_policy": a.omp_wait_policy or None,
        "recbole_anomaly_detection": a.recbole_as_shipped,
        "protocol": ("leave-one-out (last item test, second-to-last validation), full ranking over all items; "
                     "llmrec: pessimistic ties, history masked / unmasked as stated; RecBole: no history masking, "
                     "ties in torch.topk index order; both keep the best validation NDCG@10 epoch"),
        "versions": {"llmrec": llmrec.__version__, "llmrec_env": pip_versions(Path(sys.executable), ["torch", "numpy", "polars"]),
                     "recbole_env": pip_versions(py, ["recbole", "torch", "numpy", "pandas", "scipy", "ray"]) if py else None,
                     "recbole_pins": PINS},
        "notes": ["timings on a shared 2-core VM while other work ran: noisy",
                  "an epoch: RecBole = every prefix row once (batch = rows); llmrec = every user sequence once (batch = users)"],
        "runs": [],
    }
    if a.append and out_path.exists():
        old = json.loads(out_path.read_text())
        res["runs"] = old.get("runs", [])
        res["commands"] = old.get("commands", [old.get("command")]) + [res["command"]]

    def put(r: dict) -> None:
        key = lambda x: (x.get("dataset"), x.get("model"), x.get("system"), x.get("mask_history"),  # noqa: E731
                         json.dumps(x.get("llmrec_params"), sort_keys=True), json.dumps(x.get("llmrec_train"), sort_keys=True))
        res["runs"] = [x for x in res["runs"] if key(x) != key(r)] + [r]
    for ds in a.datasets.split(","):
        d = load_dataset(ds)
        exp = work / "data" / ds
        export_recbole(d, exp, items=False)
        for model in a.models.split(","):
            if not _llmrec_has(model):
                put({"system": "llmrec", "dataset": ds, "model": model, "rc": None,
                     "error": f"llmrec has no model {model!r} yet", "mask_history": None})
                print(f"skip {ds}/{model}: llmrec has no {model}", flush=True)
                continue
            todo = [("llmrec-masked", lambda: run_llmrec(ds, model, True, a, work)),
                    ("llmrec-unmasked", lambda: run_llmrec(ds, model, False, a, work)),
                    ("recbole", lambda: run_recbole(ds, model, a, work, py, exp))]
            for sysname, fn in todo:
                if sysname not in systems:
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {ds} / {model} / {sysname} ...", flush=True)
                r = summarize(fn())
                r["epochs"], r["threads_requested"] = a.epochs, a.threads
                r["batch_size"] = a.batch_size if sysname == "recbole" else a.llmrec_batch_size
                put(r)
                res["time_to_quality"] = time_to_quality(res["runs"])
                print(f"    rc {r['rc']}, wall {r['wall_seconds']:.0f}s, s/epoch {r.get('median_seconds_per_epoch')}, "
                      f"test {r.get('test')}, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
                out_path.write_text(json.dumps(res, indent=2, default=str))  # after every run
    print(markdown_table(res))
    print_ttq(res)
    print(f"\nwrote {out_path}")
    return 0




if __name__ == "__main__":
    sys.exit(main())
