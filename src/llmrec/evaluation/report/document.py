"""The report as one document of blocks (headings, paragraphs, tables, lists, figures) that both renderers read.

Everything the report says is decided here, once: the Markdown and the HTML renderer (``render.py``) only turn
blocks into syntax, so the two cannot drift apart (a budget-stopped run is named in both, a flagged number is
marked in both). Figures are drawn in HTML only; Markdown points to the HTML report for them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from llmrec.evaluation.report.runs import RunGroup
from llmrec.evaluation.report.sections import Cell, Row, Section

Span = tuple[str, str]  # (style, text); style "" (plain) | "b" (bold) | "code"


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    spans: list[Span]


@dataclass
class Bullets:
    items: list[list[Span]]


@dataclass
class TCell:
    text: str
    num: bool = False  # right-aligned number
    bold: bool = False
    flag: str | None = None  # a number that fails a consistency check: the reason
    note: str | None = None  # the footnote that names the flagged number (tables with footnotes=True)


@dataclass
class TRow:
    cells: list[TCell]
    ours: bool = False


@dataclass
class Table:
    head: list[str]
    rows: list[TRow]
    numeric_from: int  # columns from this index on hold numbers (right-aligned)
    footnotes: bool = False  # flagged cells get numbered footnotes below the table


@dataclass
class Figure:
    title: str
    svg: str
    caption: str = ""


@dataclass
class Figures:
    """A group of plots (HTML); Markdown says where to find them."""

    title: str
    figures: list[Figure] = field(default_factory=list)


Block = Heading | Para | Bullets | Table | Figures


def fmt_cell(c: Cell | None, digits: int = 4) -> str:
    if c is None or c.value is None:
        return "–"
    s = f"{c.value:.{digits}f}"
    if c.std is not None:
        s += f" ± {c.std:.{digits}f}"
    return s


def ratio(o: Cell | None, p: Cell | None) -> str:
    if o is None or p is None or o.value is None or not p.value:
        return "–"
    return f"{(o.value / p.value - 1) * 100:+.0f}%"


def main_table(sec: Section) -> Table:
    rows = []
    for r in sec.rows:
        ours = r.kind == "ours"
        cells = [TCell("llmrec" if ours else r.source, bold=ours), TCell(r.model), TCell(r.label, bold=ours),
                 TCell(r.protocol), TCell(str(r.runs) if ours else "", num=True)]
        for m in sec.columns:
            c = r.cells.get(m)
            flag = c.flag if c is not None else None
            cells.append(TCell(fmt_cell(c), num=True, flag=flag, note=f"{r.source}, {r.label}, {m}: {flag}" if flag else None))
        rows.append(TRow(cells, ours=ours))
    return Table(["source", "model", "row", "protocol", "runs"] + sec.columns, rows, numeric_from=4, footnotes=True)


def comparison_table(sec: Section) -> Table:
    """One line per metric that an our row and a published row of the same model both have."""
    rows = []
    for o, p, match in sec.comparisons:
        ms = [m for m in sec.columns if m in o.cells and m in p.cells]
        lead = [TCell(o.label), TCell(f"{p.source}: {p.label}"), TCell(match)]
        if not ms:
            rows.append(TRow(lead + [TCell("no common metric"), TCell(""), TCell(""), TCell("")]))
        for k, m in enumerate(ms):
            pc = p.cells[m]
            rows.append(TRow((lead if k == 0 else [TCell(""), TCell(""), TCell("")]) + [
                TCell(m), TCell(fmt_cell(o.cells[m]), num=True), TCell(fmt_cell(pc), num=True, flag=pc.flag),
                TCell(ratio(o.cells[m], pc), num=True)]))
    return Table(["ours", "published", "protocol", "metric", "ours", "published", "ours / published − 1"], rows,
                 numeric_from=4)


def run_item(g: RunGroup) -> list[Span]:
    seeds = ", ".join(str(s) for s in g.seeds)
    commits = ", ".join(sorted({str(r.get("git_commit")) for r in g.runs}))
    budget = [str(r.get("seed")) for r in g.runs if (r.get("fit_info") or {}).get("stopped_by_budget")]
    spans: list[Span] = [("", f"{g.name} ({g.dataset}, {g.model}; seeds {seeds}; commit {commits}")]
    if budget:
        spans.append(("b", f"; stopped by the time budget, not converged: seed {', '.join(budget)}"))
    spans.append(("", "): "))
    for i, p in enumerate(g.paths):
        spans += ([("", ", ")] if i else []) + [("code", str(p))]
    return spans


def build_document(sections: list[Section], groups: list[RunGroup], published: dict, *, split: str = "test",
                   figures=None) -> list[Block]:
    """``figures``: a function ``Section -> list[Figures]`` (the plots of a dataset), or None for none."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    n_runs = sum(len(g.runs) for g in groups)
    doc: list[Block] = [Heading(1, "llmrec report"), Para([("", (
        f"{n_runs} run(s) in {len(groups)} row(s); {split} metrics; generated {now}. "
        "Our rows (bold) show mean ± sample std over seeds where a row has several runs. Published numbers as "
        "printed (percentages shown as fractions); ⚠ marks a number the notes say fails a consistency check "
        "(in HTML: red, hover for the reason). A paper's Recall@k with one target per user is shown as HR@k."))])]
    for sec in sections:
        doc += [Heading(2, sec.dataset), main_table(sec)]
        if sec.comparisons:
            doc += [Heading(3, "Ours vs published, same model"), comparison_table(sec)]
        if sec.data_notes:
            cav = dict(sec.caveats)
            items = []
            for lab, data in sec.data_notes:
                extra = "; ".join(cav.get(lab, []))
                items.append([("b", lab), ("", f": {data}" + (f". {extra}" if extra else ""))])
            doc += [Para([("", "Published data and caveats:")]), Bullets(items)]
        elif any(r.kind == "ours" for r in sec.rows):
            doc.append(Para([("", "No published numbers for this dataset.")]))
        if figures is not None:
            doc += [f for f in figures(sec) if f.figures]
    used = {r.table["source"] for sec in sections for r in sec.rows if r.table}
    if used:
        doc += [Heading(2, "Sources"), Bullets([[("b", k), ("", f": {s['paper']} (notes: {s['notes']})")]
                                                 for k, s in published["sources"].items() if k in used])]
    doc += [Heading(2, "Runs"), Bullets([run_item(g) for g in groups])]
    return doc


def our_rows(sec: Section) -> list[Row]:
    return [r for r in sec.rows if r.kind == "ours" and r.group is not None]
