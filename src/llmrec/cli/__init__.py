"""The ``llmrec`` command line (typer + rich). Commands: ``data`` (cli/data.py), ``run`` (cli/runs.py), and
``report``, ``recommend``, ``export``, ``serve``, ``artifact``, ``tune`` here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llmrec.cli import data as _data  # noqa: F401  (registers the data commands)
from llmrec.cli import runs as _runs  # noqa: F401  (registers run)
from llmrec.cli.common import app, console, data_app, fail, print_error
from llmrec.cli.runs import print_table  # noqa: F401  (part of this module's interface)


def _version(value: bool) -> None:
    if value:
        import llmrec

        print(f"llmrec {llmrec.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit")) -> None:
    """llmrec: sequential recommendation with language models."""


app.add_typer(data_app, name="data")


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(None, help="run directories (searched for metrics.json) or metrics.json files"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the Markdown report here (default: print it)"),
    html_out: Optional[Path] = typer.Option(None, "--html", help="also write an HTML report"),
    split: str = typer.Option("test", help="which metrics: test | valid"),
    all_published: bool = typer.Option(False, "--all-published", help="also list published tables for datasets with no run"),
    with_published: Optional[str] = typer.Option(
        None, "--with-published", help="comma-separated published datasets to show too, e.g. rsc-xing,ijc (HNVM's tables)"),
    metrics: Optional[str] = typer.Option(None, help="comma-separated metric columns (default: the published ones + HR@10, NDCG@10)"),
    published: Optional[Path] = typer.Option(None, help="published numbers (default: llmrec/evaluation/published.yaml)"),
) -> None:
    """One table of our runs (mean ± std over seeds) beside the papers' published numbers, as Markdown and HTML."""
    from llmrec.evaluation.report import make_report

    if not run_dirs and not all_published and not with_published:
        raise typer.BadParameter("give at least one run directory (or --all-published / --with-published)")
    try:
        md, page, _ = make_report(run_dirs or [], published_path=published, split=split, all_published=all_published,
                                  metrics=[m.strip() for m in metrics.split(",")] if metrics else None,
                                  with_datasets=[d.strip() for d in with_published.split(",")] if with_published else None)
    except (FileNotFoundError, ValueError) as e:
        print_error(e)
        raise typer.Exit(2)
    if out is None:
        print(md)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
        console.print(f"wrote {out}")
    if html_out is not None:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(page)
        console.print(f"wrote {html_out}")


# ----------------------------------------------------------------------------------------------------
# serving: recommend / export / serve / artifact (llmrec.pipelines.artifact, llmrec.service)


def _fail(e: Exception) -> None:
    fail(e)


def _load_run(run_dir: Path):
    from llmrec.data.fingerprint import FingerprintMismatch
    from llmrec.pipelines.artifact import ArtifactError, load_artifact

    try:
        return load_artifact(run_dir)
    except (ArtifactError, FingerprintMismatch, FileNotFoundError) as e:
        _fail(e)


def _split_ids(s: Optional[str]) -> Optional[list[str]]:
    if s is None:
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


@app.command("recommend")
def recommend_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory made by `llmrec run` (or its model/ directory)"),
    user: Optional[str] = typer.Option(None, "--user", help="original id of a user seen in training"),
    history: Optional[str] = typer.Option(None, "--history", help="comma-separated original item ids, oldest first "
                                          "(a new user; with --user: appended to the user's history)"),
    k: int = typer.Option(10, "--k", min=1, help="number of items"),
    exclude: Optional[str] = typer.Option(None, "--exclude", help="comma-separated item ids never to recommend"),
    keep_history: bool = typer.Option(False, "--keep-history", help="allow items of the history in the answer"),
    as_json: bool = typer.Option(False, "--json", help="print JSON (the same document POST /recommend answers)"),
) -> None:
    """Top-k items for a known user or for a history of item ids (unknown item ids are reported)."""
    from llmrec.service.engine import EmptyHistory, Query, UnknownUser, recommend

    if user is None and history is None:
        raise typer.BadParameter("give --user ID or --history ID,ID,...", param_hint="--user / --history")
    art = _load_run(run_dir)
    q = Query(user=user, history=_split_ids(history), k=k, exclude=_split_ids(exclude) or [],
              exclude_history=not keep_history)
    try:
        ans = recommend(art, q)
    except (UnknownUser, EmptyHistory) as e:
        _fail(e)
    if as_json:
        print(json.dumps(ans, indent=2))
        return
    err = Console(stderr=True)
    if ans["unknown_items"]:
        err.print(f"[yellow]warning:[/yellow] {len(ans['unknown_items'])} history item id(s) not in the catalogue, "
                  f"not used: {escape(', '.join(ans['unknown_items'][:20]))}", highlight=False)
    if ans["unknown_exclude"]:
        err.print(f"[yellow]warning:[/yellow] --exclude ids not in the catalogue: {escape(', '.join(ans['unknown_exclude'][:20]))}",
                  highlight=False)
    who = f"user {escape(user)}" if user is not None else "the given history"
    t = Table(title=f"{getattr(art.model, 'name', '?')} — top {k} for {who} ({ans['history_length']} history items, "
              f"history {'excluded' if not keep_history else 'kept'})")
    for c, j in (("rank", "right"), ("item", "left"), ("title", "left"), ("score", "right")):
        t.add_column(c, justify=j)
    for r in ans["items"]:
        t.add_row(str(r["rank"]), escape(r["item_id"]), escape((r["title"] or "")[:80]), f"{r['score']:.4f}")
    console.print(t)


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory made by `llmrec run`"),
    out: Path = typer.Option(..., "--out", help="parquet file: user_id, rank, item_id, score (one row per item)"),
    k: int = typer.Option(100, "--k", min=1, help="items per user"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="users per model call (bounds memory)"),
    keep_history: bool = typer.Option(False, "--keep-history", help="allow items of the history in the lists"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads"),
) -> None:
    """Top-k for every user of the run, batched, into one parquet file."""
    import torch

    from llmrec.service.engine import export_all

    if threads:
        torch.set_num_threads(threads)
    art = _load_run(run_dir)
    m = export_all(art, out, k=k, batch_size=batch_size, exclude_history=not keep_history)
    console.print(f"wrote {out}: {m['users']:,} users, {m['rows']:,} rows (top {k})")


@app.command("serve")
def serve_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory made by `llmrec run`"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (0.0.0.0 exposes it)"),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="answer concurrent requests with one model call"),
    max_batch: int = typer.Option(32, "--max-batch", min=1),
    max_wait_ms: float = typer.Option(0.0, "--max-wait-ms", min=0.0,
                                      help="how long a batch waits for more requests (0: what queued meanwhile)"),
    max_k: int = typer.Option(1000, "--max-k", min=1),
    max_history: int = typer.Option(1000, "--max-history", min=1, help="most item ids in a request's history"),
    max_exclude: int = typer.Option(1000, "--max-exclude", min=0, help="most item ids in a request's exclude list"),
    max_body_bytes: int = typer.Option(256 * 1024, "--max-body-bytes", min=1024, help="largest request body (413 above)"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads"),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """HTTP service: POST /recommend, GET /items/{id}, /health, /metrics, /docs (OpenAPI)."""
    import torch
    import uvicorn

    from llmrec.service.app import ServeSettings, create_app

    if threads:
        torch.set_num_threads(threads)
    art = _load_run(run_dir)
    s = ServeSettings(batching=batching, max_batch=max_batch, max_wait_ms=max_wait_ms, max_k=max_k, max_history=max_history,
                      max_exclude=max_exclude, max_body_bytes=max_body_bytes)
    console.print(f"serving {getattr(art.model, 'name', '?')} from {run_dir} on http://{host}:{port} "
                  f"({art.n_users:,} users, {art.n_items:,} items; docs at /docs)")
    uvicorn.run(create_app(art, s), host=host, port=port, log_level=log_level)


@app.command("artifact")
def artifact_cmd(
    run_dir: Path = typer.Argument(..., help="a run made before llmrec saved serving files"),
) -> None:
    """Add the serving files (ids, histories, item text) to an older run, from its config.yaml and data."""
    from llmrec.data.fingerprint import FingerprintMismatch
    from llmrec.pipelines.artifact import ArtifactError, backfill_artifact

    try:
        d = backfill_artifact(run_dir)
    except (ArtifactError, FingerprintMismatch) as e:
        _fail(e)
    console.print(f"wrote serving files to {d}")


@app.command("tune")
def tune_cmd(
    config: Path = typer.Argument(..., help="the YAML config to tune"),
    space: Path = typer.Option(..., "--space", help="search space: config keys -> ranges (see docs/training.md)"),
    trials: int = typer.Option(..., "--trials", help="finished (complete or pruned) trials to reach, resumed runs included"),
    out: Path = typer.Option(..., "--out", help="study folder: study.db, trials/, best.yaml, best/, tune.json"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="stop starting new trials after this many minutes"),
    set_: list[str] = typer.Option([], "--set", help="override config keys for every trial"),
    sampler: str = typer.Option("tpe", help="tpe | random"),
    pruner: str = typer.Option("median", help="median | none"),
    seed: int = typer.Option(0, help="sampler seed"),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL shared by parallel workers (default OUT/study.db)"),
    keep_running: bool = typer.Option(False, "--keep-running", help="parallel workers: do not mark other workers' running trials as failed"),
    final: bool = typer.Option(True, "--final/--no-final", help="re-train the best configuration and test it once"),
    final_set: list[str] = typer.Option([], "--final-set",
                                        help="override config keys for the final re-train only (e.g. train.max_minutes=null)"),
) -> None:
    """Hyper-parameter search with Optuna on validation (never test); resumable; the best config re-trained and tested once."""
    from llmrec.pipelines.tune import tune

    s = tune(config, space, trials=trials, out=out, timeout_minutes=timeout, overrides=set_, sampler=sampler,
             pruner=pruner, seed=seed, storage=storage, fail_running=not keep_running, final=final,
             final_overrides=final_set)
    t = Table(title=f"{config} ({s['monitor']} on validation)", show_header=True)
    for col in ("trial", "state", s["monitor"], "seconds", "params"):
        t.add_column(col, justify="right" if col != "params" else "left")
    for r in s["trials"]:
        val = "-" if r["value"] is None else f"{r['value']:.4f}"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        t.add_row(str(r["trial"]), r["state"], val, "-" if r["seconds"] is None else f"{r['seconds']:.1f}", escape(params))
    console.print(t)
    best = s.get("best")
    if best is None:
        print("no trial completed")
        return
    print(f"best: trial {best['trial']}, valid {s['monitor']} {best['valid']:.4f}; config written to {out / 'best.yaml'}")
    if "retrained" in best:
        test = best["retrained"]["test"]
        print(f"re-trained in {best['retrained']['run_dir']}: test " + "  ".join(
            f"{k} {test[k]:.4f}" for k in ("HR@10", "NDCG@10") if k in test))


def expected_errors() -> tuple[type[BaseException], ...]:
    """The typed errors of bad input, bad config and damaged files: printed as one message, exit status 2."""
    from pydantic import ValidationError

    from llmrec.config import ConfigError
    from llmrec.data.errors import DataError
    from llmrec.data.fingerprint import FingerprintMismatch
    from llmrec.training.checkpoint import CheckpointError

    from llmrec.models.base import UnsupportedOperation

    errs: list[type[BaseException]] = [ConfigError, DataError, ValidationError, FingerprintMismatch, CheckpointError,
                                       UnsupportedOperation]
    try:
        from llmrec.pipelines.artifact import ArtifactError

        errs.append(ArtifactError)
    except ImportError:  # pragma: no cover
        pass
    try:  # the LLM layer's typed errors: a backbone, retriever, prompt or generation setting that cannot work
        from llmrec.llm.backbones import BackboneError
        from llmrec.llm.generation import GenerationError
        from llmrec.llm.prompts import PromptError
        from llmrec.llm.retriever import RetrieverError
        from llmrec.llm.scoring import ScoringError

        errs += [BackboneError, GenerationError, PromptError, RetrieverError, ScoringError]
    except ImportError:  # pragma: no cover  (installed without the llm extra)
        pass
    return tuple(errs)


def main() -> None:
    try:
        app()
    except expected_errors() as e:
        print_error(e)
        sys.exit(2)


if __name__ == "__main__":
    main()
