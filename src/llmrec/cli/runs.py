"""``llmrec run``: one run per config, a guarded run directory, a one-line message on Ctrl-C, a table that fits."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from llmrec.cli.common import app, check_dataset_name, console, fail

# the metric columns of the results table (the others: --all-metrics, or metrics.json)
TABLE_METRICS = ["HR@10", "NDCG@10", "HR@20", "NDCG@20"]


def _run_help() -> str:
    from llmrec.models import available_models

    return ("Load, split, fit, evaluate on validation and test; write config.yaml, model/ and, once the run has "
            "finished, metrics.json.\n\n"
            f"Models (the config's model: key): {', '.join(available_models())}.\n\n"
            "Config reference: README.md, section 'Configs' (every key; --set reaches any of them); docs/training.md "
            "(train:, tracking), docs/llm.md (the LLM systems), docs/sessions.md (split.protocol: session); "
            "example configs in configs/<dataset>/ and configs/tiny/.\n\n"
            "An existing --out directory is refused unless --resume (continue it) or --overwrite (replace it).")


def _launched_rank() -> int:
    """This process's rank under torchrun / accelerate launch (0 otherwise): only rank 0 guards the directory,
    since the other processes of the same run find it already made."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def check_run_dir(d: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to write into an existing run directory unless told how (one-line error)."""
    if _launched_rank() != 0 or not d.exists() or (d.is_dir() and not any(d.iterdir())):
        return
    if not d.is_dir():
        fail(f"--out {d}: is a file, not a run directory")
    if resume:
        return
    if overwrite:
        if not (d / "config.yaml").exists():
            fail(f"--out {d}: not a run directory (no config.yaml), so --overwrite will not delete it; choose another --out")
        return
    state = "a finished run" if (d / "metrics.json").exists() else "an unfinished run" if (d / "config.yaml").exists() else "files"
    fail(f"--out {d}: already holds {state}; add --resume to continue it, --overwrite to replace it, or choose another --out")


def saved_state(d: Path) -> str | None:
    """What an interrupted run left to resume from, in words (None: nothing)."""
    ptr = d / "checkpoints" / "latest.json"
    try:
        last = json.loads(ptr.read_text())["last"]
        return f"the checkpoint of epoch {int(str(last).rsplit('-', 1)[-1])}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    others = sorted(p.parent for p in d.rglob("latest.json")) if d.is_dir() else []
    if others:
        return "checkpoints in " + ", ".join(str(p.relative_to(d)) for p in others[:3])
    return None


def _command(config: Path, set_: list[str], d: Path, flag: str) -> str:
    return " ".join(["llmrec", "run", shlex.quote(str(config)), *(f"--set {shlex.quote(s)}" for s in set_),
                     "--out", shlex.quote(str(d)), flag])


def interrupted_line(config: Path, set_: list[str], d: Path) -> str:
    what = saved_state(d)
    if what:
        return (f"interrupted: {d} keeps {what} (no metrics.json: not counted as finished); "
                f"resume with: {_command(config, set_, d, '--resume')}")
    return f"interrupted before any checkpoint: nothing to resume in {d}; start again with: {_command(config, set_, d, '--overwrite')}"


@app.command("run", help=_run_help())
def run_cmd(
    configs: list[Path] = typer.Argument(..., help="one or more YAML configs; each becomes a run"),
    set_: list[str] = typer.Option([], "--set", help="override any key, e.g. --set model=itemknn --set data.id_order=original"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (with several configs: a parent directory)"),
    resume: bool = typer.Option(False, "--resume", help="continue interrupted runs in --out from their checkpoints "
                                "(finished runs are shown, not re-run)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing run directories"),
    all_metrics: bool = typer.Option(False, "--all-metrics", help=f"show every metric (default: {', '.join(TABLE_METRICS)})"),
) -> None:
    from llmrec.config import load_config
    from llmrec.pipelines.run import default_run_dir, run

    if resume and overwrite:
        fail("--resume continues a run and --overwrite replaces it: give one of them")
    cfgs = [(p, load_config(p, set_)) for p in configs]  # validate every config before running any
    jobs = []
    for p, cfg in cfgs:
        check_dataset_name(cfg.data.name, generic=cfg.data.generic is not None)
        d = default_run_dir(cfg) if out is None else out if len(cfgs) == 1 else out / (cfg.name or p.stem)
        check_run_dir(d, resume=resume, overwrite=overwrite)
        jobs.append((p, cfg, d))
    rows = []
    for p, cfg, d in jobs:
        if resume and (d / "metrics.json").exists():
            console.print(f"[bold]done[/bold] {escape(str(d))} (finished before; not re-run)")
            rows.append((cfg.name or p.stem, json.loads((d / "metrics.json").read_text()), d))
            continue
        if overwrite and _launched_rank() == 0 and (d / "config.yaml").exists():
            shutil.rmtree(d)
        console.print(f"[bold]run[/bold] {escape(str(p))} -> {escape(str(d))}  (model={cfg.model}, data={escape(cfg.data.name)}, "
                      f"id_order={cfg.data.id_order})")
        try:
            m = run(cfg, d, resume=resume)
        except KeyboardInterrupt:
            fail(interrupted_line(p, set_, d), code=130)
        if "metrics" in m:  # a data-parallel run's other processes return no metrics (the main one writes them)
            rows.append((cfg.name or p.stem, m, d))
    if rows:
        print_table(rows, all_metrics=all_metrics)


def print_table(rows, all_metrics: bool = False) -> None:
    """Test metrics, one row per run, in at most 100 columns; with ``all_metrics`` one row per metric instead."""
    from llmrec.evaluation.report.runs import metric_key

    keys: list[str] = []
    for _, m, _ in rows:
        keys += [k for k in m["metrics"].get("test", {}) if k not in keys]
    first = rows[0][1]
    ids = sorted({m["id_order"] for _, m, _ in rows})
    title = (f"test metrics — {escape(first['dataset'])}, {first['protocol']}, {first['eval_protocol']} ranking, "
             f"history {'masked' if first['mask_history'] else 'not masked'}, pessimistic ties"
             + (f", {ids[0]} ids" if len(ids) == 1 else ""))
    if all_metrics:
        t = Table(title=title)
        t.add_column("metric", no_wrap=True)
        for name, m, _ in rows:
            t.add_column(escape(f"{name} ({m['model']})"), justify="right", overflow="fold")
        for k in sorted(keys, key=metric_key):
            t.add_row(k, *[f"{m['metrics']['test'][k]:.4f}" if k in m["metrics"]["test"] else "-" for _, m, _ in rows])
        console.print(t)
        return
    show = [k for k in TABLE_METRICS if k in keys] or sorted(keys, key=metric_key)[:4]
    t = Table(title=title)
    t.add_column("run", overflow="fold", min_width=8)
    t.add_column("model", overflow="fold", min_width=5)
    if len(ids) > 1:
        t.add_column("ids", no_wrap=True)
    for c in show + ["fit s", "eval s"]:
        t.add_column(c, justify="right", no_wrap=True, min_width=6)
    for name, m, _ in rows:
        te = m["metrics"].get("test", {})
        secs = m.get("seconds") or {}
        t.add_row(escape(name), m["model"], *([m["id_order"]] if len(ids) > 1 else []),
                  *[f"{te[k]:.4f}" if k in te else "-" for k in show],
                  f"{secs.get('fit', 0):.1f}", f"{secs['eval_test']:.1f}" if "eval_test" in secs else "-")
    console.print(t)
    more = len(set(keys) - set(show))
    if more:
        console.print(f"{more} more metrics in each run's metrics.json, or with --all-metrics", highlight=False)
