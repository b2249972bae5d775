"""The comparison model: per dataset, our rows (mean ± std over seeds) beside the published rows of the same data."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmrec.evaluation.report.runs import (
    _DEFAULT_METRICS,
    RunGroup,
    canonical_metric,
    metric_key,
    norm_model,
    published_protocol_text,
)


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
