"""The ``llmrec`` command line (typer + rich)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

_HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings=_HELP,
                  help="llmrec: sequential recommendation with language models.")
data_app = typer.Typer(no_args_is_help=True, context_settings=_HELP, help="Datasets: list, statistics, export.")


def _version(value: bool) -> None:
    if value:
        import llmrec

        print(f"llmrec {llmrec.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit")) -> None:
    """llmrec: sequential recommendation with language models."""
app.add_typer(data_app, name="data")
console = Console(width=None if sys.stdout.isatty() else 160)

MAIN_METRICS = ["HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR@10"]


@data_app.command("list")
def data_list() -> None:
    """List the datasets llmrec can load by name."""
    from llmrec.data.loaders import DATASETS

    for name in DATASETS:
        console.print(name)


@data_app.command("stats")
def data_stats(
    dataset: str = typer.Argument(..., help="dataset name (see `llmrec data list`)"),
    path: Optional[str] = typer.Option(None, help="dataset root (default $LLMREC_DATA or ../shared/datasets)"),
    set_: list[str] = typer.Option([], "--set", help="data config override, e.g. --set min_user_interactions=5"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Users, items, interactions, sequence lengths, text coverage and the item-id leak."""
    from llmrec.config import apply_overrides
    from llmrec.data.dataset import DataConfig, load_dataset
    from llmrec.data.stats import dataset_stats

    d = apply_overrides({"name": dataset, "path": path}, set_)
    ds = load_dataset(DataConfig(**d))
    st = dataset_stats(ds)
    if as_json:
        print(json.dumps(st, indent=2))
        return
    t = Table(title=escape(ds.name), show_header=True)
    t.add_column("statistic")
    t.add_column("value", justify="right")
    for k, v in st.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                t.add_row(f"{k}.{k2}", _fmt(v2))
        elif isinstance(v, list):
            t.add_row(k, escape("; ".join(map(str, v))) if v else "-")
        else:
            t.add_row(k, _fmt(v))
    console.print(t)


@data_app.command("export")
def data_export(
    dataset: str = typer.Argument(..., help="dataset name (see `llmrec data list`)"),
    out: Path = typer.Argument(..., help="output folder; its name becomes the dataset name (OUT/<name>.inter)"),
    fmt: str = typer.Option("recbole", "--format", help="export format: recbole (atomic .inter/.item files)"),
    path: Optional[str] = typer.Option(None, help="dataset root (default $LLMREC_DATA or ../shared/datasets)"),
    set_: list[str] = typer.Option([], "--set", help="data config override, e.g. --set id_order=original"),
    timestamp: str = typer.Option("position", help="timestamp column: position (in the user's sequence) | order (llmrec's order key)"),
    items: bool = typer.Option(True, "--items/--no-items", help="also write the .item file with the item text"),
) -> None:
    """Write the prepared dataset (our ids, our order) for another framework; RecBole's LS/TO split then equals ours."""
    from llmrec.config import apply_overrides
    from llmrec.data.dataset import DataConfig, load_dataset
    from llmrec.data.export import FORMATS, TIMESTAMP_MODES, export_dataset

    if fmt not in FORMATS:
        raise typer.BadParameter(f"unknown format {fmt!r}; available: {', '.join(FORMATS)}", param_hint="--format")
    if timestamp not in TIMESTAMP_MODES:
        raise typer.BadParameter(f"{timestamp!r}: use {' | '.join(TIMESTAMP_MODES)}", param_hint="--timestamp")
    d = apply_overrides({"name": dataset, "path": path}, set_)
    cfg = DataConfig(**d)
    ds = load_dataset(cfg)
    m = export_dataset(ds, fmt, out, timestamp=timestamp, items=items, source=cfg.model_dump(mode="json"))
    console.print(
        f"wrote {', '.join(m['files'])} to {out}: {m['users']:,} users, {m['items']:,} items, "
        f"{m['interactions']:,} interactions (timestamp = {m['timestamp_meaning']})"
    )
    c = m["recbole_split_caveats"]["users_with_3_interactions_no_valid_in_recbole"]
    if c:
        console.print(f"[yellow]note:[/yellow] {c:,} users have exactly 3 interactions: RecBole gives them no validation example")


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


@app.command("run")
def run_cmd(
    configs: list[Path] = typer.Argument(..., help="one or more YAML configs; each becomes a run"),
    set_: list[str] = typer.Option([], "--set", help="override any key, e.g. --set model=itemknn --set data.id_order=original"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (with several configs: a parent directory)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run from its checkpoints in --out"),
) -> None:
    """Load, split, fit, evaluate on validation and test; write metrics.json, config.yaml and the model."""
    from llmrec.config import load_config
    from llmrec.pipelines.run import default_run_dir, run

    cfgs = [(p, load_config(p, set_)) for p in configs]  # validate every config before running any
    rows = []
    for p, cfg in cfgs:
        if out is None:
            d = default_run_dir(cfg)
        elif len(cfgs) == 1:
            d = out
        else:
            d = out / (cfg.name or p.stem)
        console.print(f"[bold]run[/bold] {escape(str(p))} -> {escape(str(d))}  (model={cfg.model}, data={escape(cfg.data.name)}, "
                      f"id_order={cfg.data.id_order})")
        m = run(cfg, d, resume=resume)
        if "metrics" in m:  # a data-parallel run's other processes return no metrics (the main one writes them)
            rows.append((cfg.name or p.stem, m, d))
    if rows:
        print_table(rows)


def print_table(rows) -> None:
    keys: list[str] = []
    for _, m, _ in rows:
        for k in m["metrics"]["test"]:
            if k not in keys:
                keys.append(k)
    show = [k for k in MAIN_METRICS if k in keys] or keys[:8]
    first = rows[0][1]
    t = Table(title=f"test metrics — {escape(first['dataset'])}, {first['protocol']}, {first['eval_protocol']} ranking, "
              f"history {'masked' if first['mask_history'] else 'not masked'}, pessimistic ties")
    for c in ["run", "model", "ids"] + show + ["fit s", "eval s"]:
        t.add_column(c, justify="right" if c not in ("run", "model", "ids") else "left", no_wrap=True)
    for name, m, _ in rows:
        te = m["metrics"]["test"]
        t.add_row(
            escape(name), m["model"], m["id_order"],
            *[f"{te[k]:.4f}" if k in te else "-" for k in show],
            f"{m['seconds']['fit']:.1f}", f"{m['seconds']['eval_test']:.1f}",
        )
    console.print(t)


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
    print_error(e)
    raise typer.Exit(2)


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


def print_error(e: BaseException | str) -> None:
    """``error: <message>`` on stderr as plain text: brackets in a message are printed, never read as markup."""
    from pydantic import ValidationError
    from rich.text import Text

    if isinstance(e, ValidationError):
        from llmrec.config import _format_validation

        msg = _format_validation(e)
    else:
        msg = str(e)
    Console(stderr=True, soft_wrap=True, highlight=False).print(Text.assemble(("error:", "bold red"), " ", msg))


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
) -> None:
    """Hyper-parameter search with Optuna on validation (never test); resumable; the best config re-trained and tested once."""
    from llmrec.pipelines.tune import tune

    s = tune(config, space, trials=trials, out=out, timeout_minutes=timeout, overrides=set_, sampler=sampler,
             pruner=pruner, seed=seed, storage=storage, fail_running=not keep_running, final=final)
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
    return tuple(errs)


def main() -> None:
    try:
        app()
    except expected_errors() as e:
        print_error(e)
        sys.exit(2)


if __name__ == "__main__":
    main()
