"""PALR (llmrec.models.palr) and the pieces below it: item texts and parsing, the interaction graph, retrievers.

The end-to-end test runs configs/tiny/palr-tiny.yaml (tiny random Llama, profile on, a 1-epoch SASRec retriever
trained inside fit, LoRA tuning, likelihood ranking + constrained generation, metrics) through the run pipeline
and reloads the saved model directory."""

from __future__ import annotations

import json
import time

import numpy as np
import polars as pl
import pytest
import torch

from llmrec.config import load_config
from llmrec.data.fingerprint import FingerprintMismatch
from llmrec.llm.itemtext import (
    ItemMatcher,
    ItemTexts,
    clean_list,
    normalize_title,
    parse_items,
    split_answer,
)
from llmrec.models.base import HistoryBatch, Recommender
from llmrec.pipelines.run import run

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = "configs/tiny/palr-tiny.yaml"


# -- item texts and parsing --------------------------------------------------------------------------


def test_normalize_title():
    assert normalize_title("Blues Brothers, The (1980)") == "The Blues Brothers"
    assert normalize_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == "The City of Lost Children"
    assert normalize_title("Pink Floyd - The Wall (1982)") == "Pink Floyd - The Wall"
    assert normalize_title("Toy Story (1995)") == "Toy Story"


def _items():
    texts = ["B000142FVW (Opi Nail Lacquer)", "B001PPMLS8 (MoroccanOil Treatment Light)", "B000G1MT2U (Mixed Chicks)"]
    return ItemTexts(texts=texts, style="asin_title", titles=["Opi Nail Lacquer", "MoroccanOil Treatment Light", "Mixed Chicks"],
                     ids=[t.split()[0] for t in texts])


def test_matcher_asin_and_fuzzy():
    m = ItemMatcher(_items())
    assert m.match('"B001PPMLS8 (something else)"') == 1  # the ASIN decides
    assert m.match("B0XXXXXXX9 (Opi Nail Lacquer)") is None  # a well-formed but unknown ASIN is a hallucination
    assert m.match("Mixed Chicks") == 2  # no id: exact title
    movies = ItemTexts(texts=["The Blues Brothers", "Almost Famous"], style="normalized_title",
                       titles=["The Blues Brothers", "Almost Famous"], ids=None)
    mm = ItemMatcher(movies, fuzzy_cutoff=85)
    assert mm.match("the blues brothers!") == 0
    assert mm.match("Almost Famus") == 1  # fuzzy
    assert mm.match("Completely Different Film") is None


def test_parse_and_clean_counts():
    text = '"B000G1MT2U (Mixed Chicks)"\n"B000G1MT2U (Mixed Chicks)"\n"B000142FVW (Opi)"\n"B0ZZZZZZZZ (fake)"\n"nothing"'
    assert len(split_answer(text)) == 5
    items = [i for _, i in parse_items(text, ItemMatcher(_items(), fuzzy_cutoff=None))]
    assert items == [2, 2, 0, None, None]
    out, c = clean_list(items, history=[0], limit=10)
    assert out == [2]
    assert c == {"outputs": 5, "invalid": 2, "duplicate": 1, "history": 1, "not_candidate": 0}
    out, c = clean_list([1, 2], candidates=[2])
    assert out == [2] and c["not_candidate"] == 1


# -- training data -------------------------------------------------------------------------------------


def test_examples_from_training_split_only():
    from llmrec.data.graph import ItemGraph
    from llmrec.models.palr import PALR

    rng = np.random.default_rng(0)
    train = [rng.choice(60, size=int(rng.integers(3, 15)), replace=False) for _ in range(50)]
    m = PALR({"variant": "v2", "retriever_config": {"model": "pop"}, "n_candidates": 20, "train_user_frac": 0.2,
              "label_len": 10, "swap_prob": 0.0, "seed": 3})
    ex, info = m.build_examples(train, ItemGraph(train, 60))
    assert info["users"] == 10 and info["per_task"] == {"recommend": 10, "recommend_retrieval": 10}
    for e in ex:
        s = set(train[e["user"]].tolist())
        assert set(e["history"]) <= s and len(e["history"]) <= 20
        assert 1 <= len(e["label"]) <= 10 and not set(e["label"]) & set(e["history"])
        if e["task"] == "recommend_retrieval":
            assert len(e["candidates"]) == 20 == len(set(e["candidates"]))
            assert set(e["label"]) <= set(e["candidates"]) and not set(e["candidates"]) & set(e["history"])
    assert info["enriched_items"] > 0  # short labels were filled from the 3-hop neighbourhood
    ex2, _ = m.build_examples(train, ItemGraph(train, 60))
    assert ex == ex2  # seeded
    m2 = PALR({**m.params.model_dump(), "train_candidates": 12})  # training lists of another size than inference
    assert all(len(e["candidates"]) == 12 for e in m2.build_examples(train, ItemGraph(train, 60))[0] if "candidates" in e)


# -- end to end ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("palr")
    cache = d / "cache"
    cfg = load_config(CFG, [f"params.cache_dir={cache}", f"data.cache_dir={d / 'data'}", "progress=false"])
    t = time.perf_counter()
    m = run(cfg, d / "run")
    return {"dir": d / "run", "metrics": m, "seconds": time.perf_counter() - t, "cfg": cfg, "root": d}


def test_end_to_end(tiny_run):
    m, d = tiny_run["metrics"], tiny_run["dir"]
    assert m["eval_sample"]["users"] == 16 and "HR@10" in m["metrics"]["test"]
    g = m["generation"]["test"]
    assert g["users"] == 16 and g["variant"] == "v2" and g["profile"] is True
    assert set(g["rates"]) == {"invalid", "duplicate", "history", "not_candidate"} and g["rates"]["invalid"] == 0.0
    assert g["retriever"]["n"] == 16 and 0 <= g["retriever"]["candidate_recall"] <= 1
    assert g["ranker"]["HR@10"] == pytest.approx(m["metrics"]["test"]["HR@10"])
    assert g["generate"]["rates"]["invalid"] == 0.0 and g["generate"]["counts"]["outputs"] == 16 * 5
    fi = m["fit_info"]
    assert fi["retriever"]["source"] == "trained" and fi["palr"]["tuning"]["steps"] == 3
    assert fi["palr"]["data"]["per_task"] == {"recommend": 12, "recommend_retrieval": 12}
    pred = pl.read_parquet(d / "predictions.parquet")
    assert pred.height == 16 and {"user", "items", "raw", "candidates"} <= set(pred.columns)
    for row in pred.iter_rows(named=True):
        assert len(row["items"]) == 5 and set(row["items"]) <= set(row["candidates"])
        gen = row["generated_items"]  # constrained generation: only candidates, none twice, all 5
        assert len(gen) == 5 == len(set(gen)) and set(gen) <= set(row["candidates"])
    cfgj = json.loads((d / "model" / "config.json").read_text())
    assert cfgj["extra"]["tuned"] and cfgj["extra"]["retriever"]["model"] == "sasrec"


def test_saved_model_serves_same_lists(tiny_run, monkeypatch):
    d = tiny_run["dir"]
    monkeypatch.setenv("LLMREC_CACHE", str(tiny_run["root"] / "other-cache"))  # recompute, do not read scores back
    m = Recommender.load(d / "model")
    m.params = m.params.model_copy(update={"cache_dir": None})
    pred = pl.read_parquet(d / "predictions.parquet").head(6)
    ds_users = pred["user"].to_list()
    from llmrec.data.dataset import load_dataset
    from llmrec.data.splits import leave_one_out

    cfg = tiny_run["cfg"]
    split = leave_one_out(load_dataset(cfg.data))
    pos = {int(u): i for i, u in enumerate(split.test.users)}
    batch = HistoryBatch(np.array(ds_users), [split.test.histories[pos[u]] for u in ds_users])
    scores = m.score(batch)
    rep = m.end_eval()
    assert [r["items"] for r in rep["predictions"]] == pred["items"].to_list()
    assert torch.isfinite(scores).sum(1).tolist() == [5] * 6


def test_constrained_decoding_only_candidates(tiny_run):
    m = Recommender.load(tiny_run["dir"] / "model")
    m.params = m.params.model_copy(update={"cache_dir": str(tiny_run["root"] / "c2")})
    m.begin_eval("adhoc")
    rng = np.random.default_rng(1)
    cands = [[int(x) for x in rng.choice(m.n_items, size=7, replace=False)] for _ in range(5)]
    prompts = [m._prompt("recommend_retrieval", [c[0]], c) for c in cands]
    lists, _ = m.rank_generate(prompts, cands)
    for lst, c in zip(lists, cands):
        assert len(lst) == 5 == len(set(lst)) and set(lst) <= set(c)


def test_retriever_with_other_fingerprint_is_refused(tiny_run):
    root = tiny_run["root"]
    other = load_config(CFG, ["model=pop", "params={}", "data.id_seed=7", f"data.cache_dir={root / 'data'}", "progress=false",
                              "eval.sample_users=4"])
    run(other, root / "pop-other-ids")
    cfg = load_config(CFG, [f"params.retriever={root / 'pop-other-ids'}", "params.retriever_config=null",
                            f"params.cache_dir={root / 'cache'}", f"data.cache_dir={root / 'data'}", "progress=false"])
    with pytest.raises(FingerprintMismatch, match="id_seed"):
        run(cfg, root / "refused")


def test_v1_free_generation_counts_with_a_model_directory(tiny_run):
    root = tiny_run["root"]
    path = tiny_run["metrics"]["fit_info"]["palr"]["backbone"]  # the tiny model's directory, as a user's HF model dir
    cfg = load_config(CFG, ["params.variant=v1", "params.profile=false", "params.retriever_config=null",
                            f"params.backbone={path}", "params.backbone_overrides={}",
                            "params.also_generate=false", "params.tuning.max_steps=1", "eval.sample_users=6",
                            f"params.cache_dir={root / 'cache'}", f"data.cache_dir={root / 'data'}", "progress=false"])
    m = run(cfg, root / "v1")
    g = m["generation"]["test"]
    assert g["variant"] == "v1" and g["rank_mode"] == "free_generation" and "retriever" not in g
    assert m["fit_info"]["palr"]["backbone"] == path
    c = g["counts"]
    assert c["outputs"] >= c["invalid"] + c["duplicate"] + c["history"]
    assert all(0 <= v <= 1 for v in g["rates"].values())
    pred = pl.read_parquet(root / "v1" / "predictions.parquet")
    assert pred.height == 6 and all(len(x) <= 5 for x in pred["items"].to_list())
