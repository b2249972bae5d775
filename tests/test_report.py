"""`llmrec report`: grouping over seeds, published numbers beside ours, flags, Markdown + HTML, and the published
data itself (structure, consistency-check flags, numbers transcribed from the notes)."""

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from llmrec.evaluation.report import (
    PUBLISHED_PATH,
    build_report,
    find_metrics,
    group_runs,
    load_published,
    make_report,
    norm_model,
    validate_published,
)

SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"


def write_run(d: Path, *, dataset="beauty", model="sasrec", seed=42, name="beauty-sasrec", mask=True, hr10=0.05,
              ndcg10=0.03, params=None, protocol="loo", eval_protocol="full", n_neg=None, extra=None):
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"name": name, "data": {"name": dataset, "id_order": "random", "path": str(d)},
           "split": {"protocol": protocol, "candidates": {"n_neg": n_neg, "strategy": "uniform", "seed": 0} if n_neg else None},
           "model": model, "params": params or {"hidden": 64}, "eval": {"ks": [5, 10], "mask_history": mask, "batch_size": 512},
           "seed": seed, "threads": 2, "progress": False}
    test = {"HR@5": hr10 / 2, "HR@10": hr10, "Recall@10": hr10, "NDCG@10": ndcg10, "NDCG@5": ndcg10 / 2, "MRR@10": ndcg10 / 1.5}
    test.update(extra or {})
    m = {"llmrec_version": "0.1.0", "git_commit": "abc", "dataset": dataset, "model": model, "protocol": protocol,
         "eval_protocol": eval_protocol, "id_order": "random", "mask_history": mask, "ks": [5, 10], "seed": seed,
         "threads": 2, "metrics": {"valid": {"HR@10": hr10 + 0.01}, "test": test}, "config": cfg}
    (d / "metrics.json").write_text(json.dumps(m))
    return d


# ---------------------------------------------------------------------------------------------------
# the published data


def test_published_yaml_is_valid_and_flags_are_consistent():
    pub = load_published()
    assert len(pub["tables"]) >= 20
    srcs = {t["source"] for t in pub["tables"]}
    assert {"palr", "genrec", "llm-trsr", "hnvm", "hllm", "klenitskiy2023", "recbole"} <= srcs
    for t in pub["tables"]:
        for r in t["rows"]:
            for m, v in r["metrics"].items():
                assert 0 <= v <= (100 if t["unit"] == "percent" else 1), (t["where"], r["label"], m)
    # HNVM Table 2: Pre@5 must be Recall@5 / 5 (one target); the flags are exactly the cells that fail, and
    # MRR@5 > Recall@5 is flagged (notes §B.8)
    n_checked = 0
    for t in pub["tables"]:
        if t["source"] == "hnvm" and t["where"].startswith("Table 2"):
            for r in t["rows"]:
                mt, fl = r["metrics"], r.get("flags") or {}
                fails = abs(mt["Precision@5"] - mt["Recall@5"] / 5) > 0.00005 + 1e-12
                assert ("Precision@5" in fl) == fails, (t["dataset"], r["label"])
                assert ("MRR@5" in fl) == (mt["MRR@5"] > mt["Recall@5"]), (t["dataset"], r["label"])
                n_checked += 1
    assert n_checked == 18
    # LLM-TRSR CORE on Amazon-M2: Recall@5 below Recall@3
    core = [r for t in pub["tables"] if t["source"] == "llm-trsr" and "amazon-m2" in t["dataset"] for r in t["rows"] if r["label"] == "CORE"][0]
    assert core["metrics"]["Recall@5"] < core["metrics"]["Recall@3"] and "Recall@5" in core["flags"]
    # every other LLM-TRSR row is monotone in k and has MRR@k <= Recall@k
    for t in pub["tables"]:
        if t["source"] == "llm-trsr":
            for r in t["rows"]:
                if r.get("flags"):
                    continue
                m = r["metrics"]
                assert m["Recall@3"] <= m["Recall@5"] <= m["Recall@10"] and all(m[f"MRR@{k}"] <= m[f"Recall@{k}"] for k in (3, 5, 10))


@pytest.mark.skipif(not SPECS.exists(), reason="shared/specs not beside the checkout")
def test_published_numbers_are_transcribed_from_the_notes():
    """Every number in published.yaml appears, as a number, in the notes file its source cites."""
    pub = load_published()
    files = {"palr": "palr-genrec.md", "genrec": "palr-genrec.md", "llm-trsr": "llm-trsr-hnvm.md", "hnvm": "llm-trsr-hnvm.md",
             "hllm": "hllm.md"}
    cache = {}
    missing = []
    for t in pub["tables"]:
        f = files.get(t["source"], "anchors.md")
        if f not in cache:
            text = (SPECS / f).read_text()
            cache[f] = {round(float(x), 6) for x in re.findall(r"(?<![\d.])\d*\.\d+", text)}
        for r in t["rows"]:
            for m, v in r["metrics"].items():
                if round(float(v), 6) not in cache[f]:
                    missing.append((t["source"], t["where"], r["label"], m, v))
    assert not missing, missing


def test_validate_published_rejects_bad_entries():
    good = yaml.safe_load(PUBLISHED_PATH.read_text())
    bad = json.loads(json.dumps(good))
    bad["tables"][0]["rows"][0]["flags"] = {"HR@99": "x"}
    with pytest.raises(ValueError, match="flag"):
        validate_published(bad)
    bad = json.loads(json.dumps(good))
    bad["tables"][0]["rows"][0]["metrics"]["Hit@10"] = 0.1
    with pytest.raises(ValueError, match="bad metric"):
        validate_published(bad)
    bad = json.loads(json.dumps(good))
    bad["tables"][0]["source"] = "nope"
    with pytest.raises(ValueError, match="unknown source"):
        validate_published(bad)


# ---------------------------------------------------------------------------------------------------
# our runs


def test_seeds_are_grouped_with_mean_and_std(tmp_path):
    for s, hr in zip((1, 2, 3), (0.050, 0.054, 0.058)):
        write_run(tmp_path / f"s{s}", seed=s, hr10=hr)
    write_run(tmp_path / "unmasked", seed=1, mask=False, hr10=0.07)  # a different protocol: its own row
    write_run(tmp_path / "bigger", seed=1, params={"hidden": 128}, hr10=0.06)  # same name, different config
    write_run(tmp_path / "nested" / "deeper", seed=1, model="pop", name="beauty-pop", hr10=0.01)
    files = find_metrics([tmp_path, tmp_path / "s1" / "metrics.json"])  # duplicates are dropped
    assert len(files) == 6
    groups = group_runs(files)
    assert len(groups) == 4
    g = [g for g in groups if g.model == "sasrec" and g.mask_history and len(g.runs) == 3][0]
    mean, std, n = g.stats()["HR@10"]
    assert n == 3 and mean == pytest.approx(0.054) and std == pytest.approx(0.004)
    assert sorted(g.seeds) == [1, 2, 3]
    names = sorted(x.name for x in groups)
    assert names == ["beauty-pop", "beauty-sasrec", "beauty-sasrec [2]", "beauty-sasrec [3]"]
    assert g.stats("valid")["HR@10"][0] == pytest.approx(0.064)


def test_report_puts_published_beside_ours(tmp_path):
    for s in (1, 2):
        write_run(tmp_path / f"s{s}", seed=s, hr10=0.06 + s / 1000)
    md, page, secs = make_report([tmp_path])
    sec = secs[0]
    assert sec.dataset == "beauty" and sec.columns[:2] == ["HR@5", "HR@10"]
    assert sec.rows[0].kind == "ours" and sec.rows[0].cells["HR@10"].std == pytest.approx(math.sqrt(0.5e-6))
    # the published SASRec rows of the same dataset, with the protocol comparison
    comps = {(p.source, p.label): match for o, p, match in sec.comparisons}
    assert comps[("PALR — Table 2", "SASRec")] == "same (paper: masking not stated)"
    assert comps[("RecBole — issues", "SASRec, RecBole CE defaults (issue #1290)")] == "same except masking"
    assert comps[("SASRec.pytorch — Result_Norm.md", "SASRec (BCE, original LN)")] == "differs: data, ranking"
    assert comps[("Klenitskiy & Vasilev 2023 — repo README", "SASRec+ (full CE)")] == "differs: data"  # 40,226-user Beauty
    assert all(norm_model(p.model) == "sasrec" for _, p, _ in sec.comparisons)
    assert "| **llmrec** | sasrec | **beauty-sasrec** | loo · full · masked · random ids | 2 | 0.0307 ± 0.0004 | 0.0615 ± 0.0007 |" in md
    assert "| PALR — Table 2 | sasrec | SASRec | loo · full · mask not stated |  | – | 0.0617 |" in md
    # one line per metric: ours, published, ratio (the same table in Markdown and HTML)
    assert re.search(r"\| HR@10 \| 0\.0615 ± 0\.0007 \| 0\.0617 \| [-+]0% \|", md)
    assert "ml-1m" not in [s.dataset for s in secs]  # only datasets we ran, unless --all-published


def test_flags_percent_and_all_published(tmp_path):
    write_run(tmp_path / "mind", dataset="mind-sample", model="sasrec", name="mind", eval_protocol="sampled", n_neg=20,
              extra={"Recall@5": 0.8, "MRR@5": 0.6})
    md, page, secs = make_report([tmp_path], all_published=True)
    by = {s.dataset: s for s in secs}
    assert {"mind-sample", "amazon-m2", "amazon-books", "pixel8m", "rsc-xing", "ijc", "ml-1m"} <= set(by)
    mind = by["mind-sample"]
    comps = {p.label: match for o, p, match in mind.comparisons}
    assert comps["SASRec"] == "differs: data, split"  # MIND-large; LLM-TRSR splits by record; 21 candidates = ours
    core = [r for r in by["amazon-m2"].rows if r.label == "CORE"][0]
    assert core.cells["HR@5"].flag and core.cells["HR@3"].flag is None  # Recall@k shown as HR@k
    hllm = [r for r in by["amazon-books"].rows if r.label == "HLLM-1B†"][0]
    assert hllm.cells["HR@10"].value == pytest.approx(0.0928)  # printed 9.28 %
    assert "⚠" in md and "impossible: below Recall@3" in md
    # next-session tables keep Recall (a set target is not HR)
    ns = [r for r in by["rsc-xing"].rows if r.table["protocol"].get("task") == "next-session"]
    assert ns and all("Recall@5" in r.cells for r in ns)


class _Checker(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.flags = [], 0

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        if any(k == "class" and "flag" in (v or "") for k, v in attrs):
            self.flags += 1

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (self.stack[-3:], tag)
        self.stack.pop()


def test_cli_report_writes_markdown_and_html(tmp_path):
    from typer.testing import CliRunner

    from llmrec.cli import app

    write_run(tmp_path / "runs" / "a", dataset="ml-1m", model="bert4rec", name="ml1m-b4r", hr10=0.25, ndcg10=0.13)
    write_run(tmp_path / "runs" / "b", dataset="ml-1m", model="sasrec", name="ml1m-sas", hr10=0.30, ndcg10=0.17)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "r.md").read_text()
    assert "## ml-1m" in md and "SASRec+ (full CE)" in md and "BERT4Rec (HF impl.)" in md
    assert "timestamps only for users 1-2999" in md  # the caveat travels with the numbers
    page = (tmp_path / "r.html").read_text()
    c = _Checker()
    c.feed(page)
    assert not c.stack and "<tr class='ours'>" in page
    res = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--metrics", "HR@10"])
    assert res.exit_code == 0 and "| HR@10 |" in res.output and "NDCG@10 |" not in res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nothing-here")])
    assert res.exit_code == 2


def test_build_report_without_published_rows(tmp_path):
    write_run(tmp_path / "x", dataset="toys", model="pop", name="toys-pop")
    groups = group_runs(find_metrics([tmp_path]))
    secs = build_report(groups, load_published())
    assert secs[0].dataset == "toys" and not secs[0].comparisons
    assert "HR@10" in secs[0].columns and "MRR@10" in secs[0].columns


def test_next_session_rows_keep_recall_and_both_task_rows_share_a_name(tmp_path):
    """A next-session run (a set of targets per row) shows Recall@k apart from HR@k; a config tested on two
    protocols (session_task: both) is two rows with the same name, told apart by protocol."""
    import json

    from llmrec.evaluation.report import build_report, group_runs, load_published

    def write(d, protocol, metrics):
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({
            "dataset": "toy", "model": "pop", "protocol": protocol, "eval_protocol": "full", "id_order": "random",
            "mask_history": True, "seed": 1, "metrics": {"test": metrics}, "config": {"name": "toy-pop"}}))
        return d / "metrics.json"

    files = [write(tmp_path / "a", "session-next-item-all", {"HR@5": 0.2, "Recall@5": 0.2}),
             write(tmp_path / "a" / "session-next-session", "session-next-session", {"HR@5": 0.5, "Recall@5": 0.1})]
    groups = group_runs(files)
    assert sorted(g.name for g in groups) == ["toy-pop", "toy-pop"]
    assert [g.multi_target for g in sorted(groups, key=lambda g: g.protocol)] == [False, True]
    (sec,) = build_report(groups, load_published())
    cells = {r.group.protocol: r.cells for r in sec.rows if r.kind == "ours"}
    assert "Recall@5" not in cells["session-next-item-all"] and cells["session-next-item-all"]["HR@5"].value == 0.2
    assert cells["session-next-session"]["Recall@5"].value == 0.1 and cells["session-next-session"]["HR@5"].value == 0.5


def test_a_key_set_to_null_groups_with_a_run_made_before_the_key_existed(tmp_path):
    import json

    from llmrec.evaluation.report import group_runs

    files = []
    for seed, train in ((1, {"lr": 0.1}), (2, {"lr": 0.1, "new_key": None}), (3, {"lr": 0.1, "new_key": 5})):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({
            "dataset": "toy", "model": "bpr", "protocol": "loo", "eval_protocol": "full", "id_order": "random",
            "mask_history": True, "seed": seed, "metrics": {"test": {"HR@10": 0.1}},
            "config": {"name": "toy-bpr", "seed": seed, "train": train}}))
        files.append(d / "metrics.json")
    groups = group_runs(files)
    assert sorted(len(g.runs) for g in groups) == [1, 2]  # null == absent; a real value is a different config


def test_with_published_adds_only_the_named_datasets():
    from llmrec.evaluation.report import build_report, load_published

    pub = load_published()
    secs = build_report([], pub, with_datasets=["rsc-xing", "ijc"])
    assert [s.dataset for s in secs] == ["rsc-xing", "ijc"]
    assert any(r.model == "hnvm" for r in secs[0].rows)
    with pytest.raises(ValueError, match="no published table for dataset 'nope'"):
        build_report([], pub, with_datasets=["nope"])


def test_budget_is_not_a_config_difference_but_budget_stopped_runs_are_named(tmp_path):
    import json

    from llmrec.evaluation.report import group_runs, make_report

    for seed, budget, hit in ((1, 30, False), (2, 15, True)):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({
            "dataset": "toy", "model": "bpr", "protocol": "loo", "eval_protocol": "full", "id_order": "random",
            "mask_history": True, "seed": seed, "metrics": {"test": {"HR@10": 0.1}},
            "fit_info": {"stopped_by_budget": hit}, "config": {"name": "toy-bpr", "train": {"max_minutes": budget}}}))
    assert [len(g.runs) for g in group_runs(sorted(tmp_path.rglob("metrics.json")))] == [2]
    md, _, _ = make_report([tmp_path])
    assert "stopped by the time budget, not converged: seed 2" in md
