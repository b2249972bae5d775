"""LLM-TRSR: the tiny config end to end through saved model directories (with the summary cache on a second run),
prefix-cached scores equal full-prompt scores, both summarisers over the generation cache, the prompt strings."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llmrec.config import load_config
from llmrec.models.base import HistoryBatch, Recommender
from llmrec.models.llm_trsr import LLMTRSR, SENTINEL, render_item, tokenizer_corpus

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny" / "llm-trsr.yaml"
DATA = ROOT / "configs" / "tiny" / "data"

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(*overrides):
    sets = [f"data.generic.interactions={DATA / 'interactions.csv'}", f"data.generic.items={DATA / 'items.csv'}",
            "progress=false", *overrides]
    return load_config(TINY, sets)


def _item_texts(ds):
    rows = {r["item"]: r for r in ds.item_text.iter_rows(named=True)}
    return [render_item(rows.get(i, {}), ["title"]) for i in range(ds.n_items)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """configs/tiny/llm-trsr.yaml run twice with a tiny Llama saved to a directory and loaded from it."""
    import os

    from llmrec.data.dataset import load_dataset
    from llmrec.llm.tiny import build_tiny
    from llmrec.pipelines.run import run

    tmp = tmp_path_factory.mktemp("trsr")
    old = os.environ.get("LLMREC_CACHE")
    os.environ["LLMREC_CACHE"] = str(tmp / "cache")
    try:
        t0 = time.perf_counter()
        cfg = _cfg()
        ds = load_dataset(cfg.data)
        llm = build_tiny("tiny-llama", tmp / "llm", tokenizer_corpus(_item_texts(ds)),
                         overrides=cfg.params["backbone_overrides"])
        cfg = _cfg(f"params.backbone={llm}", "params.backbone_overrides={}")
        m1 = run(cfg, tmp / "run1")
        m2 = run(cfg, tmp / "run2")  # the same config again: every summary comes from the generation cache
        seconds = time.perf_counter() - t0
        yield {"cfg": cfg, "m1": m1, "m2": m2, "tmp": tmp, "llm": llm, "seconds": seconds}
    finally:
        if old is None:
            os.environ.pop("LLMREC_CACHE", None)
        else:
            os.environ["LLMREC_CACHE"] = old


def test_tiny_config_end_to_end_through_saved_model_directories(tiny_run):
    from llmrec.data.dataset import load_dataset
    from llmrec.evaluation.evaluator import evaluate
    from llmrec.pipelines.run import make_split

    m1, m2 = tiny_run["m1"], tiny_run["m2"]
    t = m1["metrics"]["test"]
    assert m1["protocol"] == "records" and m1["eval_protocol"] == "sampled"
    assert 0.0 <= t["MRR@3"] <= t["Recall@3"] <= t["Recall@5"] <= t["Recall@10"] <= 1.0 and 0.0 <= t["TieRate"] <= 1.0
    info = m1["fit_info"]["llm_trsr"]
    assert info["backbone"] == str(tiny_run["llm"])
    assert info["train_records"] == 60 and info["train_examples"] == 120 and info["train_positives"] == 60  # 1:1
    assert info["boundary_mismatch"]["mismatched"] == 0
    assert info["tuning"]["settings"]["loss_on"] == "all" and info["tuning"]["steps"] == 45
    assert info["tuning"]["final_loss"] < info["tuning"]["first_loss"]
    sel = info["tuning"]["epoch_selection"]  # select_epoch: validation after each of the 3 epochs, the best kept
    assert [r["epoch"] for r in sel["epochs"]] == [1, 2, 3] and sel["selected_epoch"] in (1, 2, 3)
    best = max(r["valid_recall_3_5_10"] for r in sel["epochs"])
    assert m1["metrics"]["valid"]["Recall@3"] + m1["metrics"]["valid"]["Recall@5"] + m1["metrics"]["valid"]["Recall@10"] \
        == pytest.approx(best)
    s1, s2 = info["summaries"], m2["fit_info"]["llm_trsr"]["summaries"]
    assert s1["histories"] == 95 and s1["levels"] == 3  # 60 + 15 + 20 records; 3 blocks with fan_in 2
    assert s1["n_generated"] > 0
    assert s2["n_generated"] == 0 and s2["n_cached"] == s2["n_prompts"] == s1["n_prompts"]
    gen = m1["generation"]["test"]
    assert gen["prompts"] == 20 * 21 and gen["users"] == 20 and gen["prefix_cache"] is True
    for f in ("config.json", "model.safetensors"):
        assert (tiny_run["tmp"] / "run1" / "model" / f).exists()
    assert not list((tiny_run["tmp"] / "run1" / "model").glob("*.pkl")) and (tiny_run["tmp"] / "run1" / "tuning").is_dir()

    # the saved directory reloads through the generic loader and reproduces the test metrics exactly
    model = Recommender.load(tiny_run["tmp"] / "run1" / "model")
    assert isinstance(model, LLMTRSR) and len(model.summaries) == 95
    ds = load_dataset(tiny_run["cfg"].data)
    split = make_split(ds, tiny_run["cfg"])
    r = evaluate(model, split.test, ks=[3, 5, 10], protocol="sampled", progress=False)
    for k in ("Recall@3", "MRR@5", "NDCG@10", "TieRate"):
        assert r["metrics"][k] == pytest.approx(t[k], abs=1e-9)
    with pytest.raises(ValueError, match="sampled candidates"):
        model.score(HistoryBatch(split.test.users[:1], split.test.histories[:1]))


def test_prefix_cached_scores_equal_full_prompt_scores(tiny_run):
    from llmrec.data.dataset import load_dataset
    from llmrec.llm.scoring import encode_prefix, encode_suffix
    from llmrec.pipelines.run import make_split

    model = Recommender.load(tiny_run["tmp"] / "run1" / "model")
    split = make_split(load_dataset(tiny_run["cfg"].data), tiny_run["cfg"])
    es = split.test
    batch = HistoryBatch(es.users[:4], es.histories[:4])
    cand = torch.from_numpy(es.candidates[:4])
    cached = model.score_candidates(batch, cand)
    model.params = model.params.model_copy(update={"prefix_cache": False})
    full = model.score_candidates(batch, cand)
    assert cached.shape == (4, 21)
    assert float((cached - full).abs().max()) < 1e-5
    assert float(cached.std()) > 0  # not a constant
    # an independent reference: one forward pass over the whole prompt, softmax over the yes/no logits
    bb = model._backbone()
    tok = bb.tokenizer
    head, tail = model.prefix_and_tail(model._window(es.histories[0]), tok)
    yes, no = encode_suffix(tok, "yes")[0], encode_suffix(tok, "no")[0]
    with torch.no_grad():
        for j in (0, 7, 20):
            ids = encode_prefix(tok, head) + encode_suffix(tok, model.item_texts[int(es.candidates[0, j])] + tail)
            logits = bb.model(input_ids=torch.tensor([ids])).logits[0, -1]
            ref = torch.softmax(logits[[yes, no]], dim=0)[0]
            assert float(cached[0, j]) == pytest.approx(float(ref), abs=1e-5)
    # the paper's literal Eq. 3 (softmax over the two probabilities) is a score in (0.5 - 0.5/e, ...) close to 0.5
    model.params = model.params.model_copy(update={"prefix_cache": True, "score": "eq3"})
    eq3 = model.score_candidates(batch, cand)
    assert ((eq3 > 0.26) & (eq3 < 0.74)).all()


def test_both_summarisers_one_summary_per_record_from_the_cache_on_a_rerun(tiny_run, tmp_path):
    from llmrec.data.dataset import load_dataset
    from llmrec.llm.backbones import load_backbone
    from llmrec.llm.summarize import SummaryPrompts, hierarchical, recurrent
    from llmrec.pipelines.run import make_split

    split = make_split(load_dataset(tiny_run["cfg"].data), tiny_run["cfg"])
    texts = _item_texts(split.dataset)
    hists = [[texts[i] for i in h.tolist()] for h in split.test.histories]
    bb = load_backbone(str(tiny_run["llm"]), head=True)
    p = SummaryPrompts(block="llm_trsr.paper.shopping.block", merge="llm_trsr.paper.shopping.merge",
                       update="llm_trsr.paper.shopping.update")
    gs = {"max_new_tokens": 4, "batch_size": 16, "repetition_penalty": 1.5}
    for fn, kw in ((hierarchical, {"fan_in": 2}), (recurrent, {})):
        a = fn(bb, hists, p, gs, cache_dir=tmp_path, progress=False, **kw)
        b = fn(bb, hists, p, gs, cache_dir=tmp_path, progress=False, **kw)
        assert len(a.summaries) == len(b.summaries) == len(split.test)
        assert a.info["n_generated"] > 0 and b.info["n_generated"] == 0 and b.info["n_cached"] == b.info["n_prompts"]
        assert a.summaries == b.summaries


def test_hierarchical_levels_and_recurrent_chain(monkeypatch):
    """The structure of both summarisers, with a fake generation stage that echoes what it was asked."""
    import llmrec.llm.generation as G
    from llmrec.llm.generation import GenerationResult
    from llmrec.llm.summarize import SummaryPrompts, hierarchical, recurrent

    calls = []

    def fake_generate(backbone, prompts, settings, **kw):
        calls.append(kw["template_key"].split("@")[0])
        outs = []
        for t in prompts:
            if "[User Preferences Summaries]" in t:
                outs.append("M(" + "+".join(line.split(". ", 1)[1] for line in t.split("\n") if line[:1].isdigit()) + ")")
            elif "[Previous Preference Summary]" in t:
                prev = t.split("[Previous Preference Summary]\n")[1].split("\n")[0]
                last = [line for line in t.split("\n") if line[:1].isdigit()][-1]
                outs.append("U(" + prev + "," + last.split(". ", 1)[1] + ")")
            else:
                outs.append("B(" + ",".join(line.split(". ", 1)[1] for line in t.split("\n") if line[:1].isdigit()) + ")")
        return GenerationResult(texts=outs, token_ids=[[] for _ in outs], n_prompts=len(outs), n_generated=len(outs))

    monkeypatch.setattr(G, "generate", fake_generate)

    class Tok:
        chat_template = None

    class BB:
        tokenizer = Tok()

    p = SummaryPrompts(block="llm_trsr.paper.shopping.block", merge="llm_trsr.paper.shopping.merge",
                       update="llm_trsr.paper.shopping.update")
    hist = [[f"i{k}" for k in range(11)], ["j0", "j1"], []]  # 3 blocks, 1 block, none
    r = hierarchical(BB(), hist, p, {}, block_size=5, fan_in=2, progress=False)
    assert r.summaries[0] == "M(M(B(i0,i1,i2,i3,i4)+B(i5,i6,i7,i8,i9))+B(i10))"  # 3 blocks, fan-in 2: 3 levels
    assert r.summaries[1] == "B(j0,j1)" and r.summaries[2] == "" and r.info["levels"] == 3
    r = hierarchical(BB(), hist, p, {}, block_size=5, fan_in=5, progress=False)
    assert r.summaries[0] == "M(B(i0,i1,i2,i3,i4)+B(i5,i6,i7,i8,i9)+B(i10))" and r.info["levels"] == 2  # the code's 2 levels
    calls.clear()
    r = recurrent(BB(), hist, p, {}, block_size=5, progress=False)
    assert r.summaries[0] == "U(U(B(i0,i1,i2,i3,i4),i9),i10)" and r.summaries[1] == "B(j0,j1)" and r.info["steps"] == 3
    assert calls == ["llm_trsr.paper.shopping.block", "llm_trsr.paper.shopping.update", "llm_trsr.paper.shopping.update"]


def test_prompt_strings_of_both_presets():
    m = LLMTRSR({"preset": "code", "recent_items": 2})
    m.item_texts = ["Title: a", "Title: b", "Title: c"]
    m._extra = {"domain": "shopping"}
    m.summaries = {"0,1,2": "likes a, b, c"}
    text = m.user_text(np.array([0, 1, 2]))
    assert text == (
        "### User:\nGiven a preference summary of the user, and information related to the historical items the user has "
        "purchased, predict whether the user will click on the given next product. Note that the preference summary "
        "captures long-term interests, while the recent items indicate short term interests. Both of them should be "
        "holistically considered for a more comprehensive understanding of user behavior. Please output 'yes' or 'no'."
        f"\n[Preference Summary]\nlikes a, b, c\n[Historical Items]\nTitle: b\nTitle: c\n[Next Item]\n{SENTINEL}"
        "\n### Assistant:\n")
    m = LLMTRSR({"preset": "paper", "summary": "none", "recent_items": 0})
    m.item_texts, m._extra = ["Title: a"], {"domain": "news"}
    text = m.user_text(np.array([0]))
    assert "[Preference Summary]\nNULL\n\n[Historical News]\nNULL\n\n[Next News]\n" in text  # TALLRec-style, 0 items
    assert render_item({"category": "travel", "subcategory": "travelnews", "title": "T", "abstract": None},
                       ["category", "subcategory", "title", "abstract"]) == "Category: travel; SubCategory: travelnews; Title: T"
    with pytest.raises(Exception, match="summary"):
        LLMTRSR({"summary": "bogus"})
    json.dumps(LLMTRSR().params.model_dump())  # every default is JSON-able (resolved configs)
