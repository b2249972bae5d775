"""``llmrec report``: gather run directories into one table, with the papers' published numbers beside ours.

Inputs are ``metrics.json`` files (docs/metrics.md): a run directory, a parent of run directories (searched
recursively) or the file itself. Runs that differ only by seed — same dataset, model, split protocol, eval
protocol, id order, masking, config name and resolved config apart from ``seed`` and run-time settings — are
one row with mean ± sample std over the seeds.

Published numbers come from ``published.yaml`` beside this package (transcribed from the implementer notes in
shared/specs, each with its paper, table and the protocol the paper used). Numbers the notes say fail a
consistency check carry a flag and its reason; never use them as targets. Printed percentages are shown as
fractions. A paper's ``Recall@k`` with one target per user is ``HR@k`` and is shown in that column.

For each dataset the report has

1. one table with our rows (bold) followed by every published row for that dataset,
2. "ours vs published": each of our rows beside the published rows of the same model, with the ratio and
   whether the protocols match (split, full/sampled ranking, history masking), and
3. plots (HTML): metric@K per row, training curves per run, the metric by history length.

Modules: ``runs`` (metrics.json files, grouping, published.yaml), ``sections`` (the comparison per dataset),
``document`` (the report as blocks: what both formats say), ``render`` (Markdown, HTML), ``figures`` and
``plots`` (the SVG charts).
"""

from __future__ import annotations

from llmrec.evaluation.report import render
from llmrec.evaluation.report.document import build_document
from llmrec.evaluation.report.figures import section_figures
from llmrec.evaluation.report.runs import (
    PUBLISHED_PATH,
    RunGroup,
    canonical_metric,
    find_metrics,
    group_runs,
    load_published,
    metric_key,
    norm_model,
    published_protocol_text,
    validate_published,
)
from llmrec.evaluation.report.sections import Cell, Row, Section, build_report

__all__ = ["PUBLISHED_PATH", "Cell", "Row", "RunGroup", "Section", "build_report", "canonical_metric", "find_metrics",
           "group_runs", "load_published", "make_report", "metric_key", "norm_model", "published_protocol_text",
           "to_html", "to_markdown", "validate_published"]


def to_markdown(sections: list[Section], groups: list[RunGroup], published: dict, *, split: str = "test") -> str:
    return render.to_markdown(build_document(sections, groups, published, split=split,
                                             figures=lambda s: section_figures(s, split)))


def to_html(sections: list[Section], groups: list[RunGroup], published: dict, *, split: str = "test") -> str:
    return render.to_html(build_document(sections, groups, published, split=split,
                                         figures=lambda s: section_figures(s, split)))


def make_report(paths, *, published_path=None, split: str = "test", all_published: bool = False,
                metrics: list[str] | None = None, with_datasets: list[str] | None = None) -> tuple[str, str, list[Section]]:
    """(markdown, html, sections) for the runs under ``paths``."""
    files = find_metrics(paths) if paths else []
    groups = group_runs(files)
    pub = load_published(published_path)
    secs = build_report(groups, pub, split=split, all_published=all_published, metrics=metrics, with_datasets=with_datasets)
    return to_markdown(secs, groups, pub, split=split), to_html(secs, groups, pub, split=split), secs
