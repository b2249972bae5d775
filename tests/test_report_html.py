"""The HTML report's plots (metric@K, training curves, history length) from real tiny runs, one document behind
both formats, and a screenshot of the page in headless Chromium (skipped where no Chromium is installed)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from _serving_runs import write_generic_data

from llmrec.evaluation.breakdown import history_breakdown
from llmrec.evaluation.report import make_report
from llmrec.evaluation.report.plots import bar_chart, line_chart, nice_ticks


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, one_thread):
    """Pop and a tiny SASRec (2 epochs) on generated data, through the real pipeline, with three cutoffs."""
    from llmrec.config import RunConfig
    from llmrec.pipelines.run import run

    tmp = tmp_path_factory.mktemp("report-runs")
    data = write_generic_data(tmp / "data")
    out = []
    for model, params in (("pop", {}), ("sasrec", {"max_len": 8, "hidden": 16, "blocks": 1, "heads": 1, "loss": "ce"})):
        cfg = RunConfig(data={**data, "cache_dir": str(tmp / "cache")}, model=model, params=params, name=f"tiny-{model}",
                        train={"epochs": 2, "batch_size": 16, "checkpoint": False, "patience": None},
                        eval={"ks": [1, 5, 10]}, threads=1, progress=False, seed=1)
        run(cfg, tmp / model)
        out.append(tmp / model)
    return out


def _svgs(page: str) -> list[ElementTree.Element]:
    return [ElementTree.fromstring(s) for s in re.findall(r"<svg .*?</svg>", page, flags=re.S)]


def test_history_breakdown_buckets_rows_by_history_length():
    rows = {"HR@10": np.array([1.0, 0.0, 1.0, 1.0, 0.0]), "NDCG@10": np.array([0.5, 0.0, 1.0, 0.25, 0.0])}
    out = history_breakdown([1, 2, 4, 600, 700], rows, edges=(0, 3, 5, 500))
    assert [b["history"] for b in out] == ["0–2", "3–4", "500+"]  # the empty 5–499 bucket is left out
    assert [b["users"] for b in out] == [2, 1, 2]
    assert out[0]["HR@10"] == 0.5 and out[2]["NDCG@10"] == pytest.approx(0.125) and out[2]["max"] is None


def test_charts_are_valid_svg_with_a_mark_per_value():
    assert nice_ticks(0, 0.063) == pytest.approx([0, 0.02, 0.04, 0.06, 0.08])
    svg = line_chart([("a", [(1, 0.1), (2, 0.3)]), ("b <&>", [(1, 0.2), (2, float("nan"))])], title="t", x_label="epoch",
                     y_label="HR@10")
    root = ElementTree.fromstring(svg)  # well-formed, names escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2 and len(root.findall(f"{ns}circle")) == 3
    svg = bar_chart(["1–2", "3+"], [("a", [0.1, None]), ("b", [0.2, 0.3])], title="t", x_label="h", y_label="m")
    assert len(ElementTree.fromstring(svg).findall(f"{ns}rect")) == 3 + 2  # bars + legend boxes
    assert line_chart([("a", [])], title="t", x_label="x", y_label="y") == ""


def test_runs_record_history_buckets_and_the_html_report_plots_them(tiny_runs):
    m = json.loads((tiny_runs[1] / "metrics.json").read_text())
    buckets = m["by_history_length"]["test"]
    assert sum(b["users"] for b in buckets) == m["split_sizes"]["test_examples"]
    assert all(set(m["metrics"]["test"]) <= set(b) for b in buckets)
    md, page, _ = make_report(tiny_runs)
    titles = [s.get("aria-label") for s in _svgs(page)]
    assert titles == ["HR@K", "NDCG@K", "training loss per epoch", "validation NDCG@10 per epoch",
                      "test NDCG@10 by history length", "test HR@10 by history length"]
    assert page.count("class='series'") >= 2 + 2 + 1 + 1 and "class='bar'" in page
    assert "Plots (in the HTML report" in md and "<svg" not in md


def test_markdown_and_html_say_the_same_things(tmp_path):
    """The budget warning (once only in Markdown) and the commit are in both formats."""
    d = tmp_path / "r"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({
        "dataset": "toy", "model": "bpr", "protocol": "loo", "eval_protocol": "full", "id_order": "random",
        "mask_history": True, "seed": 3, "git_commit": "c0ffee", "metrics": {"test": {"HR@10": 0.1, "NDCG@10": 0.05}},
        "fit_info": {"stopped_by_budget": True, "history": [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]},
        "config": {"name": "toy-bpr"}}))
    md, page, _ = make_report([d])
    for text in ("stopped by the time budget, not converged: seed 3", "c0ffee", "toy-bpr", "0.1000"):
        assert text in md and text in page, text
    assert "Stopped by the time budget (not converged): toy-bpr." in page  # under the training curve too


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(html_file: Path, png: Path, width: int = 1280, height: int = 2000, timeout: float = 120) -> None:
    """Render ``html_file`` in headless Chromium and save a PNG of the window."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}",
                        html_file.resolve().as_uri()], capture_output=True, timeout=timeout, check=False,
                       env={**os.environ, "HOME": profile})


def _dump_dom(html_file: Path, timeout: float = 120) -> str:
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                            "--dump-dom", html_file.resolve().as_uri()], check=False, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "HOME": profile})
    return r.stdout


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (apt-get install chromium; scripts/setup.sh "
                                                  "installs it where apt-get is available)")
def test_report_screenshot_in_headless_chromium(tiny_runs, tmp_path):
    _, page, _ = make_report(tiny_runs)
    f = tmp_path / "report.html"
    f.write_text(page)
    dom = _dump_dom(f)  # what the browser parsed: every chart is an SVG element with its lines and bars
    assert dom.count("<svg") == 6 and dom.count("<polyline") >= 6 and "class=\"bar\"" in dom
    png = tmp_path / "report.png"
    screenshot(f, png, height=1600)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, len(data)  # a page of tables and charts, not blank
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (w, h) == (1280, 1600)


def test_sparse_history_buckets_join_their_neighbour():
    from llmrec.evaluation.report.figures import _merge_plan

    users = {3: 7000, 5: 8000, 20: 900, 50: 136, 100: 16, 200: 1}
    assert _merge_plan([{lo: {"users": n} for lo, n in users.items()}]) == [[3], [5], [20], [50, 100, 200]]
    assert _merge_plan([{0: {"users": 10}, 3: {"users": 60}}]) == [[0, 3]]
