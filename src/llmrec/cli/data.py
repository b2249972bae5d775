"""``llmrec data``: list, stats, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from llmrec.cli.common import check_dataset_name, console, data_app

# what a name holds where that is not obvious from the name
DATASET_NOTES = {
    "ml-1m": "the 2,999 users with timestamps (users 1-2999); all 6,040 users: ml-1m-pairs",
    "ml-1m-pairs": "all 6,040 ML-1M users, no timestamps (order = position in the file)",
}


@data_app.command("list")
def data_list() -> None:
    """List the datasets llmrec can load by name (and what a name holds where it is not obvious)."""
    from llmrec.data.loaders import DATASETS

    for name in DATASETS:
        note = DATASET_NOTES.get(name)
        print(f"{name:<14} {note}" if note else name)  # plain lines: never wrapped, easy to grep


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

    check_dataset_name(dataset, generic=any(s.strip().startswith("generic") for s in set_), key="dataset")
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
    check_dataset_name(dataset, generic=any(s.strip().startswith("generic") for s in set_), key="dataset")
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
