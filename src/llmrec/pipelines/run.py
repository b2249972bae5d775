"""``llmrec run``: load, split, fit, evaluate on validation and test, and write the run directory.

Run directory layout::

    DIR/config.yaml     the fully resolved config (every default filled in)
    DIR/metrics.json    results (keys documented in docs/metrics.md); written last, so only a finished run has it
    DIR/model/          config.json + model.safetensors
    DIR/checkpoints/    per-epoch checkpoints of trained models (resume with --resume DIR)
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path

import numpy as np
import torch

import llmrec
from llmrec.config import RunConfig, load_config
from llmrec.data.dataset import Dataset, load_dataset
from llmrec.data.splits import Split, leave_one_out, sample_candidates
from llmrec.evaluation.breakdown import history_breakdown
from llmrec.evaluation.evaluator import evaluate
from llmrec.models import build_model
from llmrec.utils.io import atomic_write_json, atomic_write_text, git_commit
from llmrec.utils.runtime import seed_all


def make_split(ds: Dataset, cfg: RunConfig) -> Split:
    sc = cfg.split
    if sc.protocol == "loo":
        split = leave_one_out(ds)
    elif sc.protocol == "session":
        from llmrec.data import sessions  # provided with the session protocol

        split = sessions.session_split(ds, cfg)
    elif sc.protocol == "records":  # one record per user; samples its own candidates (llmrec.data.records)
        from llmrec.data.records import records_split

        return records_split(ds, sc)
    else:  # pragma: no cover - guarded by the config type
        raise ValueError(sc.protocol)
    if sc.candidates is not None:
        c = sc.candidates
        pop = np.bincount(np.concatenate([s for s in split.train if len(s)]), minlength=ds.n_items)
        seqs = ds.sequences()
        for es, off in ((split.valid, 1), (split.test, 2)):
            es.candidates = sample_candidates(
                es, ds.n_items, c.n_neg, strategy=c.strategy, popularity=pop,
                exclude=[seqs[u] for u in es.users], seed=c.seed + off,
            )
    return split


def load_split(config: str | Path | RunConfig, overrides: list[str] | None = None) -> tuple[RunConfig, Dataset, Split]:
    """A config (a path is loaded with ``overrides``), its dataset and its split: where a benchmark or script starts."""
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    ds = load_dataset(cfg.data)
    return cfg, ds, make_split(ds, cfg)


def sample_eval_users(split: Split, n: int | None, seed: int) -> np.ndarray | None:
    """Restrict validation and test (and extra test sets) to a seeded sample of ``n`` users, in place.

    The sample depends only on the split's evaluated users and the seed, so every model run on the same data
    and split with the same ``eval.sample_users`` / ``eval.sample_seed`` is evaluated on the same users."""
    if n is None:
        return None
    sets = [split.valid, split.test, *split.extra_tests.values()]
    users = np.unique(np.concatenate([es.users for es in sets if len(es)] or [np.zeros(0, dtype=np.int64)]))
    if n >= len(users):
        return users
    chosen = np.sort(np.random.default_rng(seed).permutation(users)[:n])
    for es in sets:
        keep = np.flatnonzero(np.isin(es.users, chosen))
        sub = es.subset(keep)
        es.__dict__.update(sub.__dict__)
    return chosen


def default_run_dir(cfg: RunConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name or cfg.data.name + '-' + cfg.model}-{stamp}"


def run(cfg: RunConfig, out_dir: str | Path | None = None, resume: bool = False, *, callbacks=None,
        evaluate_test: bool = True) -> dict:
    """Run one experiment end to end; returns the metrics.json content.

    ``callbacks``: functions ``f(model, epoch, record)`` the shared trainer calls after every epoch (``llmrec
    tune`` prunes through one). ``evaluate_test=False`` stops after validation (hyper-parameter search never
    looks at test)."""
    out = Path(out_dir) if out_dir else default_run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    _unmark_finished(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_all(cfg.seed)
    if int(os.environ.get("RANK", "0") or 0) == 0:  # under torchrun only the main process writes the run directory
        atomic_write_text(out / "config.yaml", cfg.to_yaml())

    secs: dict[str, float] = {}
    t = time.perf_counter()
    ds = load_dataset(cfg.data)
    from llmrec.validation import check_data, make_split_checked  # the config against this data, before any fit

    check_data(cfg, ds)
    split = make_split_checked(ds, cfg, make_split)
    sampled = sample_eval_users(split, cfg.eval.sample_users, cfg.eval.sample_seed)
    secs["load_and_split"] = time.perf_counter() - t

    from llmrec.data.fingerprint import data_fingerprint

    model = build_model(cfg.model, cfg.params)
    model.data_fingerprint = data_fingerprint(ds, cfg.data, split.protocol)
    from llmrec.training.tracking import make_tracker

    tracker = make_tracker(cfg.track, out)
    tracker.log_config(cfg)
    t = time.perf_counter()
    try:
        model.fit(split, cfg=cfg, run_dir=out, resume=resume, progress=cfg.progress,
                  callbacks=[tracker.callback(lr=cfg.train.lr), *(callbacks or [])])
    except BaseException:
        tracker.close()
        raise
    secs["fit"] = time.perf_counter() - t
    rank = int(os.environ.get("RANK", "0")) if getattr(model, "fit_info", {}).get("num_processes", 1) > 1 else 0
    if rank:  # data-parallel: only the main process evaluates and writes the run directory
        tracker.close()
        return {"fit_info": model.fit_info, "rank": rank}
    model.save(out / "model")
    from llmrec.pipelines.artifact import save_artifact  # serving files: id maps, histories, item text

    save_artifact(out / "model", split, model.data_fingerprint)

    protocol = "sampled" if cfg.split.candidates is not None else "full"
    ev = dict(ks=cfg.eval.ks, mask_history=cfg.eval.mask_history, protocol=protocol,
              batch_size=cfg.eval.batch_size, progress=cfg.progress, keep_rows=cfg.eval.keep_rows)
    results = {}
    reports: dict[str, dict] = {}
    if cfg.eval.validate_split and len(split.valid):
        r = evaluate(model, split.valid, **ev)
        results["valid"] = r["metrics"]
        secs["eval_valid"] = r["seconds"]
        reports["valid"] = _model_report(r, out, None)
    by_length = {}
    if evaluate_test:
        r = evaluate(model, split.test, **{**ev, "keep_rows": True})  # per-row values for the history-length buckets
        results["test"] = r["metrics"]
        secs["eval_test"] = r["seconds"]
        reports["test"] = _model_report(r, out, out / "predictions.parquet")
        by_length["test"] = history_breakdown([len(h) for h in split.test.histories], r["rows"])
        if cfg.eval.keep_rows:
            np.savez_compressed(out / "test_rows.npz", **{k: np.asarray(v) for k, v in r["rows"].items()})

    metrics = {
        "llmrec_version": llmrec.__version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": ds.name,
        "model": cfg.model,
        "protocol": split.protocol,
        "eval_protocol": protocol,
        "id_order": cfg.data.id_order,
        "mask_history": cfg.eval.mask_history and protocol == "full",  # sampled candidates are never masked
        "ks": cfg.eval.ks,
        "seed": cfg.seed,
        "threads": torch.get_num_threads(),
        "dataset_stats": {"users": ds.n_users, "items": ds.n_items, "interactions": ds.n_interactions},
        "split_sizes": split.sizes(),
        "metrics": results,
        "seconds": secs,
        "fit_info": getattr(model, "fit_info", {}),
        "by_history_length": by_length,
        "eval_sample": None if sampled is None else {"users": int(len(sampled)), "seed": cfg.eval.sample_seed},
        "data_fingerprint": model.data_fingerprint,
        "notes": ds.notes,
        "config": cfg.model_dump(mode="json"),
    }
    extras = {}
    for name, es in (split.extra_tests.items() if evaluate_test else ()):  # further test sets from the same fit (session_task: both)
        r = evaluate(model, es, **{**ev, "keep_rows": True})
        extras[name] = {**metrics, "protocol": name, "metrics": {"test": r["metrics"]},
                        "by_history_length": {"test": history_breakdown([len(h) for h in es.histories], r["rows"])},
                        "seconds": {**secs, "eval_test": r["seconds"]},
                        "selected_on": f"{split.protocol} validation (one fit for both tasks; see ../metrics.json)",
                        "split_sizes": {**metrics["split_sizes"], "test_examples": len(es)}}
        metrics.setdefault("extra_tests", {})[name] = r["metrics"]
    if any(reports.values()):
        metrics["generation"] = {k: v for k, v in reports.items() if v}
    atomic_write_json(out / "metrics.json", metrics)  # written last: a run directory with metrics.json is finished
    for name, extra in extras.items():
        atomic_write_json(out / name / "metrics.json", extra)
    tracker.log_final(metrics)
    tracker.close()
    return metrics


def _unmark_finished(out: Path) -> None:
    """A run starting (or resuming) in ``out`` makes its earlier results stale: metrics.json, the mark of a
    finished run, is removed first (and its extra test sets' beside it), so that a run that then fails or is
    interrupted never leaves a directory that looks finished."""
    stale = [out / "metrics.json"]
    if (out / "config.yaml").exists():  # a run directory: its sub-directories with metrics.json are extra test sets
        stale += list(out.glob("*/metrics.json"))
    for f in stale:
        f.unlink(missing_ok=True)


def _model_report(r: dict, out: Path, predictions_path: Path | None) -> dict:
    """The model's own evaluation report (see Recommender.end_eval); predictions go to a parquet file."""
    rep = dict(r.get("model_report") or {})
    rows = rep.pop("predictions", None)
    if rows and predictions_path is not None:
        import polars as pl

        tmp = predictions_path.with_suffix(".parquet.tmp")
        pl.DataFrame(rows).write_parquet(tmp)
        tmp.replace(predictions_path)
        rep["predictions_file"] = predictions_path.name
    return rep
