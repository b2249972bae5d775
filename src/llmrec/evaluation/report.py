"""``llmrec report``: gather run directories into one table, with the papers' published numbers beside ours.

Inputs are ``metrics.json`` files (docs/metrics.md): a run directory, a parent of run directories (searched
recursively) or the file itself. Runs that differ only by seed — same dataset, model, split protocol, eval
protocol, id order, masking, config name and resolved config apart from ``seed`` and run-time settings — are
one row with mean ± sample std over the seeds.

Published numbers come from ``published.yaml`` beside this file (transcribed from the implementer notes in
shared/specs, each with its paper, table and the protocol the paper used). Numbers the notes say fail a
consistency check carry a flag and its reason; never use them as targets. Printed percentages are shown as
fractions. A paper's ``Recall@k`` with one target per user is ``HR@k`` and is shown in that column.

For each dataset the report has

1. one table with our rows (bold in HTML) followed by every published row for that dataset, and
2. "ours vs published": each of our rows beside the published rows of the same model, with the ratio and
   whether the protocols match (split, full/sampled ranking, history masking).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PUBLISHED_PATH = Path(__file__).with_name("published.yaml")

# config keys that do not change results (or are the seed): ignored when deciding that runs differ only by seed
_RUNTIME_KEYS = {
    ("seed",), ("threads",), ("progress",), ("name",),
    ("data", "path"), ("data", "cache_dir"), ("data", "use_cache"),
    ("eval", "batch_size"), ("eval", "keep_rows"), ("train", "eval_batch_size"), ("train", "checkpoint"),
    # a wall-time budget: runs it stopped are marked in the run list ("stopped by the time budget")
    ("train", "max_minutes"),
}
_FAMILY_ORDER = ["HR", "Recall", "NDCG", "MRR", "Precision"]
_DEFAULT_METRICS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR@10"]
_MODEL_ALIASES = {"bprmf": "bpr", "mf": "bpr", "knn": "itemknn", "neumf": "ncf", "sasrecplus": "sasrec"}


def norm_model(name: str) -> str:
    k = re.sub(r"[^0-9a-z]", "", str(name).lower())
    return _MODEL_ALIASES.get(k, k)


def metric_key(m: str) -> tuple:
    fam, _, k = m.partition("@")
    fi = _FAMILY_ORDER.index(fam) if fam in _FAMILY_ORDER else len(_FAMILY_ORDER)
    return (fi, fam, int(k) if k.isdigit() else 0)


def canonical_metric(m: str, multi_target: bool = False) -> str:
    """Recall@k with one target per example is HR@k: show both under HR@k."""
    if not multi_target and m.startswith("Recall@"):
        return "HR@" + m.split("@", 1)[1]
    return m


# ----------------------------------------------------------------------------------------------------
# published numbers


def load_published(path: str | Path | None = None) -> dict:
    d = yaml.safe_load(Path(path or PUBLISHED_PATH).read_text())
    validate_published(d)
    return d


def validate_published(d: dict) -> None:
    """Structural checks (raise ValueError naming the entry)."""
    if not isinstance(d, dict) or "tables" not in d or "sources" not in d:
        raise ValueError("published data needs 'sources' and 'tables'")
    for n, t in enumerate(d["tables"]):
        where = f"tables[{n}] ({t.get('source')}, {t.get('where')})"
        for k in ("source", "where", "dataset", "data", "protocol", "unit", "rows"):
            if k not in t:
                raise ValueError(f"{where}: missing {k!r}")
        if t["source"] not in d["sources"]:
            raise ValueError(f"{where}: unknown source {t['source']!r}")
        if not isinstance(t.get("data_matches", True), bool):
            raise ValueError(f"{where}: data_matches must be true or false")
        if t["unit"] not in ("fraction", "percent"):
            raise ValueError(f"{where}: unit must be fraction or percent")
        for r in t["rows"]:
            for k in ("model", "label", "metrics"):
                if k not in r:
                    raise ValueError(f"{where}: row {r.get('label')!r} misses {k!r}")
            for m, v in r["metrics"].items():
                if not isinstance(v, (int, float)) or not re.fullmatch(r"(HR|Recall|NDCG|MRR|Precision)@\d+", m):
                    raise ValueError(f"{where}: row {r['label']!r}: bad metric {m}={v!r}")
            for m in (r.get("flags") or {}):
                if m not in r["metrics"]:
                    raise ValueError(f"{where}: row {r['label']!r}: flag on a metric it does not have: {m}")


def published_protocol_text(p: dict) -> str:
    ev = p.get("eval", "?")
    if ev == "sampled" and p.get("candidates"):
        ev = f"sampled ({p['candidates']} candidates)"
    mask = {True: "masked", False: "unmasked", None: "mask not stated"}[p.get("mask_history")]
    task = f" · {p['task']}" if p.get("task") else ""
    return f"{p.get('split', '?')} · {ev} · {mask}{task}"


# ----------------------------------------------------------------------------------------------------
# our runs


def find_metrics(paths) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == "metrics.json":
            out.append(p)
        elif p.is_dir():
            found = sorted(p.rglob("metrics.json"))
            if not found:
                raise FileNotFoundError(f"{p}: no metrics.json in this directory or below")
            out.extend(found)
        else:
            raise FileNotFoundError(f"{p}: not a run directory or metrics.json")
    seen, uniq = set(), []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq


def _strip_runtime(cfg, prefix=()):
    """The config minus run-time keys; a key set to null counts as absent (so a run made before an optional key
    existed still groups with later runs that leave it unset)."""
    if not isinstance(cfg, dict):
        return cfg
    return {k: _strip_runtime(v, prefix + (k,)) for k, v in cfg.items()
            if prefix + (k,) not in _RUNTIME_KEYS and v is not None}


@dataclass
class RunGroup:
    dataset: str
    model: str
    name: str
    protocol: str
    eval_protocol: str
    id_order: str
    mask_history: bool
    n_neg: int | None
    multi_target: bool
    runs: list[dict] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    @property
    def seeds(self) -> list:
        return [r.get("seed") for r in self.runs]

    def stats(self, split: str = "test") -> dict[str, tuple[float, float | None, int]]:
        """metric -> (mean, sample std or None, n)."""
        vals: dict[str, list[float]] = {}
        for r in self.runs:
            for m, v in ((r.get("metrics") or {}).get(split) or {}).items():
                if isinstance(v, (int, float)):
                    vals.setdefault(m, []).append(float(v))
        out = {}
        for m, vs in vals.items():
            mean = sum(vs) / len(vs)
            std = math.sqrt(sum((v - mean) ** 2 for v in vs) / (len(vs) - 1)) if len(vs) > 1 else None
            out[m] = (mean, std, len(vs))
        return out

    def protocol_text(self) -> str:
        ev = self.eval_protocol
        if ev == "sampled" and self.n_neg:
            ev = f"sampled ({self.n_neg + 1} candidates)"
        return f"{self.protocol} · {ev} · {'masked' if self.mask_history else 'unmasked'} · {self.id_order} ids"


def group_runs(metrics_files: list[Path]) -> list[RunGroup]:
    groups: dict[str, RunGroup] = {}
    for p in metrics_files:
        m = json.loads(Path(p).read_text())
        cfg = m.get("config") or {}
        cand = ((cfg.get("split") or {}).get("candidates") or {})
        name = cfg.get("name") or Path(p).parent.name
        fp = json.dumps(_strip_runtime(cfg), sort_keys=True, default=str)
        key = json.dumps([m.get("dataset"), m.get("model"), m.get("protocol"), m.get("eval_protocol"), m.get("id_order"),
                          m.get("mask_history"), name, fp], default=str)
        if key not in groups:
            # same name, different config: keep apart, and say so in the name
            # (the same config tested on two protocols -- session_task: both -- is two rows told apart by protocol)
            clash = sum(1 for g in groups.values() if g.name.split(" [")[0] == name and g.dataset == m.get("dataset")
                        and g.protocol == m.get("protocol"))
            groups[key] = RunGroup(
                dataset=m.get("dataset", "?"), model=m.get("model", "?"), name=name + (f" [{clash + 1}]" if clash else ""),
                protocol=m.get("protocol", "?"), eval_protocol=m.get("eval_protocol", "?"), id_order=m.get("id_order", "?"),
                mask_history=bool(m.get("mask_history")), n_neg=cand.get("n_neg") if cand else None,
                multi_target=str(m.get("protocol", "")).endswith("next-session"),  # a set of targets per row
            )
        groups[key].runs.append(m)
        groups[key].paths.append(Path(p).parent)
    return list(groups.values())


# ----------------------------------------------------------------------------------------------------
# the report model


@dataclass
class Cell:
    value: float | None
    std: float | None = None
    n: int = 1
    flag: str | None = None


@dataclass
class Row:
    kind: str  # "ours" | "published"
    source: str
    model: str
    label: str
    protocol: str
    cells: dict[str, Cell]
    runs: int = 0
    protocol_match: str | None = None
    caveats: list[str] = field(default_factory=list)
    group: RunGroup | None = None
    table: dict | None = None


@dataclass
class Section:
    dataset: str
    columns: list[str]
    rows: list[Row]
    comparisons: list[tuple[Row, Row, str]]  # (ours, published, protocol match)
    caveats: list[tuple[str, list[str]]]  # (source label, caveats)
    data_notes: list[tuple[str, str]]


def _match(g: RunGroup, p: dict, data_matches: bool = True) -> str:
    diffs = [] if data_matches else ["data"]
    split = {"loo": "loo", "session": "session-last"}.get(g.protocol, g.protocol)
    if p.get("split") != split:
        diffs.append("split")
    if p.get("eval") != g.eval_protocol or (g.eval_protocol == "sampled" and p.get("candidates") and g.n_neg
                                            and p["candidates"] != g.n_neg + 1):
        diffs.append("ranking")
    if p.get("task") == "next-session" and g.protocol != "session":
        diffs.append("task")
    if diffs:
        return "differs: " + ", ".join(diffs)
    if p.get("mask_history") is None:
        return "same (paper: masking not stated)"
    if p.get("mask_history") != g.mask_history:
        return "same except masking"
    return "same"


def _source_label(t: dict, sources: dict) -> str:
    src = sources.get(t["source"], {})
    where = str(t["where"]).split(" (")[0]
    return f"{src.get('short', t['source'])} — {where}"


def build_report(groups: list[RunGroup], published: dict, *, split: str = "test", all_published: bool = False,
                 metrics: list[str] | None = None, with_datasets: list[str] | None = None) -> list[Section]:
    """``all_published``: a section for every published dataset; ``with_datasets``: sections for these published
    datasets too (e.g. a paper's tables on data we cannot run, shown beside our runs on other data)."""
    datasets: list[str] = []
    for g in groups:
        if g.dataset not in datasets:
            datasets.append(g.dataset)
    known = {d for t in published["tables"] for d in t["dataset"]}
    for d in with_datasets or []:
        if d not in known:
            raise ValueError(f"no published table for dataset {d!r}; published datasets: {', '.join(sorted(known))}")
        if d not in datasets:
            datasets.append(d)
    if all_published:
        for t in published["tables"]:
            for d in t["dataset"]:
                if d not in datasets:
                    datasets.append(d)
    sections = []
    for ds in datasets:
        ours = sorted([g for g in groups if g.dataset == ds], key=lambda g: (norm_model(g.model), g.name))
        tables = [t for t in published["tables"] if ds in t["dataset"]]
        rows: list[Row] = []
        our_metrics: set[str] = set()
        for g in ours:
            st = g.stats(split)
            cells = {}
            for m, (mean, std, n) in st.items():
                c = canonical_metric(m, g.multi_target)
                if c in cells and c != m:
                    continue  # HR@k already there
                cells[c] = Cell(mean, std, n)
            our_metrics |= set(cells)
            rows.append(Row("ours", "llmrec", g.model, g.name, g.protocol_text(), cells, runs=len(g.runs), group=g))
        pub_metrics: list[str] = []
        for t in tables:
            scale = 0.01 if t["unit"] == "percent" else 1.0
            multi = (t["protocol"] or {}).get("task") == "next-session"
            for r in t["rows"]:
                cells = {}
                for m, v in r["metrics"].items():
                    c = canonical_metric(m, multi)
                    cells[c] = Cell(float(v) * scale, flag=(r.get("flags") or {}).get(m))
                    if c not in pub_metrics:
                        pub_metrics.append(c)
                rows.append(Row("published", _source_label(t, published["sources"]), r["model"], r["label"],
                                published_protocol_text(t["protocol"]), cells, caveats=t.get("caveats") or [], table=t))
        if metrics:
            cols = list(metrics)
        else:
            wanted = set(pub_metrics) | {"HR@10", "NDCG@10"}
            if not pub_metrics:
                wanted |= set(_DEFAULT_METRICS)
            cols = [m for m in wanted if m in our_metrics or m in pub_metrics]
            cols.sort(key=metric_key)
        comps = []
        for o in [r for r in rows if r.kind == "ours"]:
            for p in [r for r in rows if r.kind == "published"]:
                if norm_model(p.model) == norm_model(o.model):
                    comps.append((o, p, _match(o.group, p.table["protocol"], p.table.get("data_matches", True))))
        cav, seen = [], set()
        notes = []
        for t in tables:
            lab = _source_label(t, published["sources"])
            if lab not in seen:
                seen.add(lab)
                notes.append((lab, t["data"]))
                if t.get("caveats"):
                    cav.append((lab, list(t["caveats"])))
        sections.append(Section(ds, cols, rows, comps, cav, notes))
    return sections


# ----------------------------------------------------------------------------------------------------
# rendering


def _fmt(c: Cell | None, digits: int = 4) -> str:
    if c is None or c.value is None:
        return "–"
    s = f"{c.value:.{digits}f}"
    if c.std is not None:
        s += f" ± {c.std:.{digits}f}"
    return s


def _ratio(o: Cell | None, p: Cell | None) -> str:
    if o is None or p is None or o.value is None or not p.value:
        return "–"
    return f"{(o.value / p.value - 1) * 100:+.0f}%"


def _comparison_metrics(sec: Section, o: Row, p: Row) -> list[str]:
    return [m for m in sec.columns if m in o.cells and m in p.cells]


def to_markdown(sections: list[Section], groups: list[RunGroup], published: dict, *, split: str = "test") -> str:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    n_runs = sum(len(g.runs) for g in groups)
    out = ["# llmrec report", "",
           f"{n_runs} run(s) in {len(groups)} row(s); {split} metrics; generated {now}. "
           "Our rows: mean ± sample std over seeds where a row has several runs. Published numbers as printed "
           "(percentages shown as fractions); ⚠ marks a number the notes say fails a consistency check. "
           "A paper's Recall@k with one target per user is shown as HR@k.", ""]
    for sec in sections:
        out += [f"## {sec.dataset}", ""]
        head = ["source", "model", "row", "protocol", "runs"] + sec.columns
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" if i < 4 else "---:" for i in range(len(head))) + "|")
        foot: list[str] = []
        for r in sec.rows:
            vals = []
            for m in sec.columns:
                c = r.cells.get(m)
                s = _fmt(c)
                if c is not None and c.flag:
                    foot.append(f"{r.source}, {r.label}, {m}: {c.flag}")
                    s += f" ⚠{len(foot)}"
                vals.append(s)
            src = "**llmrec**" if r.kind == "ours" else r.source
            lab = f"**{_md(r.label)}**" if r.kind == "ours" else _md(r.label)
            out.append("| " + " | ".join([src, r.model, lab, r.protocol, str(r.runs) if r.kind == "ours" else ""] + vals) + " |")
        out.append("")
        if foot:
            out += [f"⚠{i}: {_md(f)}" + "  " for i, f in enumerate(foot, 1)] + [""]
        if sec.comparisons:
            out += ["**Ours vs published, same model** (ratio = ours / published − 1)", "",
                    "| ours | published | protocol | metric: ours / published (ratio) |", "|---|---|---|---|"]
            for o, p, match in sec.comparisons:
                ms = _comparison_metrics(sec, o, p)
                txt = "; ".join(f"{m}: {_fmt(o.cells[m])} / {_fmt(p.cells[m])}{' ⚠' if p.cells[m].flag else ''} ({_ratio(o.cells[m], p.cells[m])})" for m in ms) or "no common metric"
                out.append(f"| {_md(o.label)} | {_md(p.source)}: {_md(p.label)} | {match} | {txt} |")
            out.append("")
        if sec.data_notes:
            out.append("Published data and caveats:")
            out.append("")
            cav = dict(sec.caveats)
            for lab, data in sec.data_notes:
                extra = "; ".join(cav.get(lab, []))
                out.append(f"- {_md(lab)}: {_md(data)}" + (f". {_md(extra)}" if extra else ""))
            out.append("")
        elif any(r.kind == "ours" for r in sec.rows):
            out += ["No published numbers for this dataset.", ""]
    out += ["## Sources", ""]
    used = {t["source"] for sec in sections for r in sec.rows if r.table for t in [r.table]}
    for k, s in published["sources"].items():
        if k in used:
            out.append(f"- **{k}**: {_md(s['paper'])} (notes: {s['notes']})")
    out += ["", "## Runs", ""]
    for g in groups:
        seeds = ", ".join(str(s) for s in g.seeds)
        commits = sorted({str(r.get("git_commit")) for r in g.runs})
        budget = [str(r.get("seed")) for r in g.runs if (r.get("fit_info") or {}).get("stopped_by_budget")]
        note = f"; **stopped by the time budget, not converged: seed {', '.join(budget)}**" if budget else ""
        out.append(f"- {_md(g.name)} ({g.dataset}, {g.model}; seeds {seeds}; commit {', '.join(commits)}{note}): "
                   + ", ".join(f"`{p}`" for p in g.paths))
    return "\n".join(out) + "\n"


def _md(s: str) -> str:
    return str(s).replace("|", "\\|")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.ours{background:#eef6ff;font-weight:600}
td.flag{background:#fde2e2;color:#900}
.small{font-size:0.85em;color:#555}
h2{margin-top:1.6em;border-bottom:1px solid #ddd}
"""


def to_html(sections: list[Section], groups: list[RunGroup], published: dict, *, split: str = "test") -> str:
    e = html.escape
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    n_runs = sum(len(g.runs) for g in groups)
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>llmrec report</title>",
           f"<style>{_CSS}</style></head><body>", "<h1>llmrec report</h1>",
           f"<p class='small'>{n_runs} run(s) in {len(groups)} row(s); {e(split)} metrics; generated {e(now)}. "
           "Our rows (blue) show mean ± sample std over seeds. Published numbers as printed (percentages as "
           "fractions). Red cells fail a consistency check in the notes (hover for the reason). A paper's "
           "Recall@k with one target per user is shown as HR@k.</p>"]
    for sec in sections:
        out.append(f"<h2>{e(sec.dataset)}</h2>")
        out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in ["source", "model", "row", "protocol", "runs"] + sec.columns) + "</tr>")
        for r in sec.rows:
            cls = " class='ours'" if r.kind == "ours" else ""
            tds = [f"<td>{e('llmrec' if r.kind == 'ours' else r.source)}</td>", f"<td>{e(r.model)}</td>",
                   f"<td>{e(r.label)}</td>", f"<td>{e(r.protocol)}</td>",
                   f"<td class='num'>{r.runs if r.kind == 'ours' else ''}</td>"]
            for m in sec.columns:
                c = r.cells.get(m)
                classes = ["num"]
                title = ""
                if c is not None and c.flag:
                    classes.append("flag")
                    title = f" title='{e(c.flag, quote=True)}'"
                txt = e(_fmt(c)) + (" ⚠" if c is not None and c.flag else "")
                tds.append(f"<td class='{' '.join(classes)}'{title}>{txt}</td>")
            out.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
        out.append("</table>")
        flags = [(r, m, r.cells[m].flag) for r in sec.rows for m in sec.columns if m in r.cells and r.cells[m].flag]
        if flags:
            out.append("<ul class='small'>" + "".join(f"<li>⚠ {e(r.source)}, {e(r.label)}, {e(m)}: {e(f)}</li>" for r, m, f in flags) + "</ul>")
        if sec.comparisons:
            out.append("<h3>Ours vs published, same model</h3><table><tr><th>ours</th><th>published</th><th>protocol</th>"
                       "<th>metric</th><th>ours</th><th>published</th><th>ours / published − 1</th></tr>")
            for o, p, match in sec.comparisons:
                ms = _comparison_metrics(sec, o, p) or [None]
                for k, m in enumerate(ms):
                    lead = (f"<td rowspan='{len(ms)}'>{e(o.label)}</td><td rowspan='{len(ms)}'>{e(p.source)}: {e(p.label)}</td>"
                            f"<td rowspan='{len(ms)}'>{e(match)}</td>") if k == 0 else ""
                    if m is None:
                        out.append(f"<tr>{lead}<td colspan='4'>no common metric</td></tr>")
                        continue
                    pc = p.cells[m]
                    pcls = "num flag" if pc.flag else "num"
                    out.append(f"<tr>{lead}<td>{e(m)}</td><td class='num'>{e(_fmt(o.cells[m]))}</td>"
                               f"<td class='{pcls}'>{e(_fmt(pc))}</td><td class='num'>{e(_ratio(o.cells[m], pc))}</td></tr>")
            out.append("</table>")
        if sec.data_notes:
            cav = dict(sec.caveats)
            out.append("<p class='small'>Published data and caveats:</p><ul class='small'>")
            for lab, data in sec.data_notes:
                extra = "; ".join(cav.get(lab, []))
                out.append(f"<li><b>{e(lab)}</b>: {e(data)}" + (f". {e(extra)}" if extra else "") + "</li>")
            out.append("</ul>")
        elif any(r.kind == "ours" for r in sec.rows):
            out.append("<p class='small'>No published numbers for this dataset.</p>")
    used = {r.table["source"] for sec in sections for r in sec.rows if r.table}
    if used:
        out.append("<h2>Sources</h2><ul class='small'>")
        for k, s in published["sources"].items():
            if k in used:
                out.append(f"<li><b>{e(k)}</b>: {e(s['paper'])} (notes: {e(s['notes'])})</li>")
        out.append("</ul>")
    out.append("<h2>Runs</h2><ul class='small'>")
    for g in groups:
        seeds = ", ".join(str(s) for s in g.seeds)
        out.append(f"<li>{e(g.name)} ({e(g.dataset)}, {e(g.model)}; seeds {e(seeds)}): "
                   + ", ".join(f"<code>{e(str(p))}</code>" for p in g.paths) + "</li>")
    out.append("</ul></body></html>")
    return "\n".join(out) + "\n"


def make_report(paths, *, published_path=None, split: str = "test", all_published: bool = False,
                metrics: list[str] | None = None, with_datasets: list[str] | None = None) -> tuple[str, str, list[Section]]:
    """(markdown, html, sections) for the runs under ``paths``."""
    files = find_metrics(paths) if paths else []
    groups = group_runs(files)
    pub = load_published(published_path)
    secs = build_report(groups, pub, split=split, all_published=all_published, metrics=metrics, with_datasets=with_datasets)
    return to_markdown(secs, groups, pub, split=split), to_html(secs, groups, pub, split=split), secs
