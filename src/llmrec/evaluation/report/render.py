"""Markdown and HTML from one list of blocks (``document.py``): syntax only, no decisions about content."""

from __future__ import annotations

import html

from llmrec.evaluation.report.document import (
    Block,
    Bullets,
    Figures,
    Heading,
    Para,
    Span,
    Table,
)


def _md(s: str) -> str:
    return str(s).replace("|", "\\|")


def _md_spans(spans: list[Span]) -> str:
    out = []
    for style, text in spans:
        out.append({"b": f"**{_md(text)}**", "code": f"`{text}`"}.get(style, _md(text)) if text else "")
    return "".join(out)


def _md_table(t: Table) -> list[str]:
    out = ["| " + " | ".join(t.head) + " |",
           "|" + "|".join("---:" if i >= t.numeric_from else "---" for i in range(len(t.head))) + "|"]
    notes: list[str] = []
    for r in t.rows:
        vals = []
        for c in r.cells:
            s = f"**{_md(c.text)}**" if c.bold and c.text else _md(c.text)
            if c.flag:
                if t.footnotes and c.note:
                    notes.append(c.note)
                    s += f" ⚠{len(notes)}"
                else:
                    s += " ⚠"
            vals.append(s)
        out.append("| " + " | ".join(vals) + " |")
    out.append("")
    if notes:
        out += [f"⚠{i}: {_md(n)}  " for i, n in enumerate(notes, 1)] + [""]
    return out


def to_markdown(doc: list[Block]) -> str:
    out: list[str] = []
    for b in doc:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            out += [_md_spans(b.spans), ""]
        elif isinstance(b, Bullets):
            out += ["- " + _md_spans(i) for i in b.items] + [""]
        elif isinstance(b, Table):
            out += _md_table(b)
        elif isinstance(b, Figures):
            titles = "; ".join(f.title for f in b.figures)
            out += [f"*{b.title} (in the HTML report, `llmrec report --html`): {_md(titles)}.*", ""]
    return "\n".join(out).rstrip("\n") + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.ours{background:#eef6ff;font-weight:600}
td.flag{background:#fde2e2;color:#900}
.small{font-size:0.85em;color:#555}
h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.figs{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
figure{margin:0;border:1px solid #e3e3e3;border-radius:4px;padding:0.5em;background:#fff}
figcaption{font-size:0.8em;color:#555;max-width:560px}
svg text{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
"""


def _html_spans(spans: list[Span]) -> str:
    e = html.escape
    return "".join({"b": f"<b>{e(t)}</b>", "code": f"<code>{e(t)}</code>"}.get(s, e(t)) for s, t in spans)


def _html_table(t: Table) -> list[str]:
    e = html.escape
    out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.head) + "</tr>"]
    notes: list[str] = []
    for r in t.rows:
        tds = []
        for i, c in enumerate(r.cells):
            classes = (["num"] if c.num or i >= t.numeric_from else []) + (["flag"] if c.flag else [])
            cls = f" class='{' '.join(classes)}'" if classes else ""
            title = f" title='{e(c.flag, quote=True)}'" if c.flag else ""
            tds.append(f"<td{cls}{title}>{e(c.text)}{' ⚠' if c.flag else ''}</td>")
            if c.flag and t.footnotes and c.note:
                notes.append(c.note)
        row_cls = " class='ours'" if r.ours else ""
        out.append(f"<tr{row_cls}>" + "".join(tds) + "</tr>")
    out.append("</table>")
    if notes:
        out.append("<ul class='small'>" + "".join(f"<li>⚠ {e(n)}</li>" for n in notes) + "</ul>")
    return out


def to_html(doc: list[Block]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>llmrec report</title>",
           f"<style>{_CSS}</style></head><body>"]
    for b in doc:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p class='small'>{_html_spans(b.spans)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul class='small'>" + "".join(f"<li>{_html_spans(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            out += _html_table(b)
        elif isinstance(b, Figures):
            out.append(f"<h3>{e(b.title)}</h3><div class='figs'>")
            for f in b.figures:
                cap = f"<figcaption>{e(f.caption)}</figcaption>" if f.caption else ""
                out.append(f"<figure>{f.svg}{cap}</figure>")
            out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
