"""The plots of one dataset section, from what each run directory holds:

- metric@K: our rows' test (or valid) metrics at every cutoff, one line per row, for HR and NDCG;
- training curves: loss and the validation metric per epoch, from ``fit_info.history`` in metrics.json (or
  ``train_log.jsonl`` beside it), one line per run;
- history length: a metric per bucket of history length, from ``by_history_length`` in metrics.json
  (written by ``llmrec run``; older runs have none and are left out of that plot).
"""

from __future__ import annotations

import json
from pathlib import Path

from llmrec.evaluation.report.document import Figure, Figures, our_rows
from llmrec.evaluation.report.plots import bar_chart, line_chart
from llmrec.evaluation.report.runs import RunGroup
from llmrec.evaluation.report.sections import Row, Section


def _k(m: str) -> int | None:
    k = m.partition("@")[2]
    return int(k) if k.isdigit() else None


def metric_at_k(rows: list[Row]) -> list[Figure]:
    figs = []
    for fam in ("HR", "NDCG"):
        ks = sorted({_k(m) for r in rows for m in r.cells if m.startswith(fam + "@") and _k(m) is not None})
        if len(ks) < 2:
            continue
        series = []
        for r in rows:
            pts = [(i, r.cells[f"{fam}@{k}"].value) for i, k in enumerate(ks) if f"{fam}@{k}" in r.cells]
            if pts:
                series.append((r.label, pts))
        svg = line_chart(series, title=f"{fam}@K", x_label="K", y_label=fam, x_labels=[str(k) for k in ks])
        if svg:
            figs.append(Figure(f"{fam}@K", svg, "Mean over seeds; full ranking or sampled candidates as in each row's protocol."))
    return figs


def run_history(metrics: dict, run_dir: Path) -> list[dict]:
    """Per-epoch records of a run: fit_info.history, else train_log.jsonl (the last record of each epoch)."""
    hist = (metrics.get("fit_info") or {}).get("history")
    if hist:
        return list(hist)
    log = Path(run_dir) / "train_log.jsonl"
    if not log.is_file():
        return []
    by_epoch: dict = {}
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interrupted write
        if isinstance(rec, dict) and "epoch" in rec:
            by_epoch[rec["epoch"]] = rec
    return [by_epoch[e] for e in sorted(by_epoch)]


def _run_label(g: RunGroup, m: dict) -> str:
    return g.name + (f" (seed {m.get('seed')})" if len(g.runs) > 1 else "")


def training_curves(rows: list[Row]) -> list[Figure]:
    loss, valid, budget = [], {}, []
    for r in rows:
        g = r.group
        for m, d in zip(g.runs, g.paths):
            hist = run_history(m, d)
            if not hist:
                continue
            lab = _run_label(g, m)
            pts = [(h["epoch"], h["loss"]) for h in hist if isinstance(h.get("loss"), (int, float))]
            if pts:
                loss.append((lab, pts))
            monitor = (m.get("fit_info") or {}).get("monitor")
            vhist = [h for h in hist if isinstance(h.get("valid"), dict) and h["valid"]]
            if vhist:
                key = monitor if monitor in vhist[0]["valid"] else next(iter(vhist[0]["valid"]))
                valid.setdefault(key, []).append((lab, [(h["epoch"], h["valid"].get(key)) for h in vhist]))
            if (m.get("fit_info") or {}).get("stopped_by_budget"):
                budget.append(lab)
    note = f" Stopped by the time budget (not converged): {', '.join(budget)}." if budget else ""
    figs = []
    if loss:
        figs.append(Figure("training loss", line_chart(loss, title="training loss per epoch", x_label="epoch",
                                                       y_label="loss", from_zero=False), "Mean training loss of each epoch." + note))
    for key, series in valid.items():
        figs.append(Figure(f"validation {key}", line_chart(series, title=f"validation {key} per epoch", x_label="epoch",
                                                           y_label=key), "Measured on the validation users after each epoch." + note))
    return figs


MIN_BUCKET_USERS = 50  # a plotted bucket with fewer users is merged into its neighbour (one user's hit is noise)


def _row_buckets(r: Row, split: str) -> dict[int, dict]:
    """min -> {min, max, users, metric: mean over the row's runs} for one row (runs that recorded buckets)."""
    acc: dict[int, list[dict]] = {}
    for m in r.group.runs:
        for b in ((m.get("by_history_length") or {}).get(split) or []):
            acc.setdefault(int(b.get("min", 0)), []).append(b)
    out = {}
    for lo, bs in acc.items():
        rec = {"min": lo, "max": bs[0].get("max"), "users": sum(b.get("users", 0) for b in bs) / len(bs)}
        for k in {k for b in bs for k in b if _k(k) is not None}:
            got = [b[k] for b in bs if isinstance(b.get(k), (int, float))]
            rec[k] = sum(got) / len(got) if got else None
        out[lo] = rec
    return out


def _merge_plan(per_row: list[dict[int, dict]]) -> list[list[int]]:
    """Groups of bucket lower bounds to plot as one bar each: sparse buckets join their neighbour."""
    los = sorted({lo for bs in per_row for lo in bs})
    users = {lo: max(bs[lo]["users"] for bs in per_row if lo in bs) for lo in los}
    groups: list[list[int]] = []
    for lo in los:
        if groups and sum(users[x] for x in groups[-1]) < MIN_BUCKET_USERS:
            groups[-1].append(lo)
        else:
            groups.append([lo])
    while len(groups) > 1 and sum(users[x] for x in groups[-1]) < MIN_BUCKET_USERS:
        tail = groups.pop()
        groups[-1] += tail
    return groups


def history_length(rows: list[Row], split: str = "test") -> list[Figure]:
    """A metric per history-length bucket, one bar per row (mean over the row's runs that recorded buckets)."""
    per_row = [(r.label, b) for r in rows if (b := _row_buckets(r, split))]
    if not per_row:
        return []
    plan = _merge_plan([b for _, b in per_row])
    labels = []
    for g in plan:
        last = max((bs[g[-1]] for _, bs in per_row if g[-1] in bs), key=lambda b: b["max"] is None)
        hi = last["max"]
        labels.append(f"{g[0]}+" if hi is None else (str(g[0]) if hi == g[0] else f"{g[0]}–{hi}"))
    users = [sum(max((bs[lo]["users"] for _, bs in per_row if lo in bs), default=0) for lo in g) for g in plan]
    present = {k for _, bs in per_row for b in bs.values() for k in b if _k(k) is not None}
    figs = []
    for fam in ("NDCG", "HR"):
        ks = sorted(_k(k) for k in present if k.startswith(fam + "@"))
        if not ks:
            continue
        metric = f"{fam}@10" if 10 in ks else f"{fam}@{ks[-1]}"
        series = []
        for lab, bs in per_row:
            vals = []
            for g in plan:
                got = [(bs[lo]["users"], bs[lo][metric]) for lo in g if lo in bs and bs[lo].get(metric) is not None]
                n = sum(u for u, _ in got)
                vals.append(sum(u * v for u, v in got) / n if n else None)
            series.append((lab, vals))
        svg = bar_chart(labels, series, title=f"{split} {metric} by history length", x_label="history length (items)",
                        y_label=metric, notes=[f"{round(u):,} users" for u in users])
        if svg:
            figs.append(Figure(f"{metric} by history length", svg,
                               f"Users bucketed by the length of the history the model saw (buckets of fewer than "
                               f"{MIN_BUCKET_USERS} users joined to their neighbour); rows without bucket data (runs made "
                               "before llmrec recorded them) are left out."))
    return figs


def section_figures(sec: Section, split: str = "test") -> list[Figures]:
    rows = our_rows(sec)
    if not rows:
        return []
    return [Figures("Plots", metric_at_k(rows) + training_curves(rows) + history_length(rows, split))]
