"""Regenerate the `llmrec report` tables that BENCHMARKS.md quotes, between its marker comments.

    .venv/bin/python benchmarks/report_tables.py            # writes benchmarks/results/report-*.md and updates BENCHMARKS.md

Each table is ``llmrec report`` over the run directories named below (runs/ is not committed: re-create the runs
with the commands in BENCHMARKS.md first). The full reports, with the comparison rows, caveats and run lists, go
to ``benchmarks/results/report-<name>.md``; BENCHMARKS.md gets the main table of each dataset section.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmrec.evaluation.report import make_report

REPO = Path(__file__).resolve().parents[1]
REPORTS = {
    # name: (run dirs, options)
    "loo": (["runs/loo/beauty", "runs/loo/ml-1m"], {}),
    "sessions": (["runs/sessions/ml-100k", "runs/sessions/ml-1m"],
                 {"metrics": ["HR@5", "Recall@5", "MRR@5", "Precision@5"], "with_datasets": ["rsc-xing", "ijc"]}),
}


def main_tables(md: str) -> str:
    """The '## dataset' headings and their first table, nothing else."""
    out, keep, in_table = [], False, False
    for line in md.splitlines():
        if line.startswith("## "):
            keep = line[3:] not in ("Sources", "Runs")
            in_table = False
            if keep:
                out += ["", "#### " + line[3:], ""]
            continue
        if not keep:
            continue
        if line.startswith("|"):
            if in_table is None:
                continue
            in_table = True
            out.append(line)
        elif in_table:
            in_table = None  # only the first table of a section
    return "\n".join(out).strip() + "\n"


def fit_table(dirs: list[str]) -> str:
    """One row per run: epochs, best epoch, why training stopped, median seconds per epoch, threads."""
    import json
    import statistics

    rows = ["| run | dataset | model | seed | epochs run | best epoch | stopped by | s / epoch (median) | threads | fit s | resumed at epoch |",
            "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for d in dirs:
        for f in sorted((REPO / d).rglob("metrics.json")):
            if f.parent.name.startswith("session-"):
                continue  # the second test of a session_task=both run: same fit
            m = json.loads(f.read_text())
            fi = m.get("fit_info") or {}
            if not fi.get("seconds_per_epoch"):
                continue
            why = ("time budget" if fi.get("stopped_by_budget") else "early stopping" if fi.get("stopped_early")
                   else "max epochs")
            rows.append(f"| {f.parent.relative_to(REPO / 'runs')} | {m['dataset']} | {m['model']} | {m.get('seed')} | "
                        f"{fi['epochs_run']} | {fi['best_epoch']} | {why} | {statistics.median(fi['seconds_per_epoch']):.1f} | "
                        f"{m.get('threads')} | {m['seconds']['fit']:.0f} | {fi.get('resumed_from_epoch') or '–'} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    bench = REPO / "BENCHMARKS.md"
    text = bench.read_text()
    for name, (dirs, opts) in REPORTS.items():
        md, _, _ = make_report([REPO / d for d in dirs], **opts)
        md = md.replace(str(REPO) + "/", "")
        (REPO / "benchmarks" / "results" / f"report-{name}.md").write_text(md)
        start, end = f"<!-- report:{name} -->", f"<!-- /report:{name} -->"
        if start in text:
            text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{main_tables(md)}{end}", text, flags=re.S)
        start, end = f"<!-- fit:{name} -->", f"<!-- /fit:{name} -->"
        if start in text:
            text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{fit_table(dirs)}{end}", text, flags=re.S)
        print(f"report-{name}.md: {len(md.splitlines())} lines")
    bench.write_text(text)


if __name__ == "__main__":
    main()
