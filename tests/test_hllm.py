"""HLLM: the tiny config end to end (through the same from_pretrained path as a real model directory), the
item-embedding cache on a second run, InfoNCE by hand, causality, save/load, retrieval, and learning."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from llmrec.config import load_config  # noqa: E402
from llmrec.models.base import HistoryBatch, Recommender  # noqa: E402
from llmrec.models.hllm import HLLM, info_nce, make_windows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny" / "hllm-tiny.yaml"
DATA = ROOT / "configs" / "tiny" / "data"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


def _cfg(*overrides):
    sets = [f"data.generic.interactions={DATA / 'interactions.csv'}", f"data.generic.items={DATA / 'items.csv'}",
            "progress=false", *overrides]
    return load_config(TINY, sets)


@pytest.fixture(scope="module")
def tiny_shop():
    from llmrec.data.dataset import load_dataset
    from llmrec.pipelines.run import make_split

    cfg = _cfg()
    ds = load_dataset(cfg.data.model_copy(update={"use_cache": False}))
    return cfg, ds, make_split(ds, cfg)


def test_tiny_config_end_to_end_through_saved_model_directories(tmp_path, monkeypatch):
    """The CI run of configs/tiny/hllm-tiny.yaml: both tiers are tiny Llamas saved to a temp dir and loaded
    from it like any Hugging Face directory; a second run reads the item-embedding cache."""
    from llmrec.data.dataset import load_dataset
    from llmrec.llm.text import item_texts
    from llmrec.llm.tiny import build_tiny
    from llmrec.pipelines.run import run

    c0 = time.process_time()
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    cfg = _cfg()
    p = cfg.params
    ds = load_dataset(cfg.data)
    texts = [p["item_prompt"] + t for t in item_texts(ds, p["item_template"])]  # what the tokenizer is trained on
    item_dir = build_tiny("tiny-llama", tmp_path / "item-llm", texts, overrides=p["item_overrides"])
    user_dir = build_tiny("tiny-llama", tmp_path / "user-llm", None, overrides=p["user_overrides"])
    cfg = _cfg(f"params.item_backbone={item_dir}", "params.item_overrides={}", f"params.user_backbone={user_dir}",
               "params.user_overrides={}")

    m1 = run(cfg, tmp_path / "run1")
    test = m1["metrics"]["test"]
    assert 0.0 <= test["NDCG@10"] <= test["HR@10"] <= 1.0 and test["HR@20"] >= test["HR@10"]
    assert test["HR@10"] > 0.3  # it learns the synthetic sequences (popularity: ~0.12, random: 10/120)
    info = m1["fit_info"]["hllm"]
    assert info["item_backbone"] == str(item_dir) and info["user_backbone"] == str(user_dir)
    assert info["item_dim"] == 32 and info["user_dim"] == 48  # projections between the tiers
    assert info["item_embeddings"]["from_cache"] is False
    cache_file = Path(info["item_embeddings"]["path"])
    assert cache_file.exists() and cache_file.parent == tmp_path / "cache" / "item_embeddings"
    assert m1["fit_info"]["epochs_run"] == 3

    # the second run of the same config reads the item embeddings from the cache
    m2 = run(cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1})}), tmp_path / "run2")
    assert m2["fit_info"]["hllm"]["item_embeddings"]["from_cache"] is True
    assert m2["fit_info"]["hllm"]["item_embeddings"]["path"] == str(cache_file)

    # the saved model reloads (config.json + model.safetensors, no pickle) and scores identically
    saved = tmp_path / "run1" / "model"
    assert json.loads((saved / "config.json").read_text())["model"] == "hllm"
    assert not list(saved.glob("*.bin")) and not list(saved.glob("*.pt"))
    from llmrec.data.dataset import load_dataset as _ld
    from llmrec.pipelines.run import make_split

    split = make_split(_ld(cfg.data), cfg)
    loaded = Recommender.load(saved)
    batch = HistoryBatch(split.test.users[:50], split.test.histories[:50])
    from llmrec.evaluation.evaluator import evaluate

    r = evaluate(loaded, split.test, ks=[10], progress=False)
    assert abs(r["metrics"]["HR@10"] - test["HR@10"]) < 1e-9 and abs(r["metrics"]["NDCG@10"] - test["NDCG@10"]) < 1e-9
    s = loaded.score(batch)
    assert s.shape == (50, ds.n_items) and torch.isfinite(s).all()
    # under a minute of CPU for both runs (CPU time, not wall time: the machine may be shared)
    assert time.process_time() - c0 < 60, time.process_time() - c0


def test_info_nce_equals_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    B, L, N, D = 2, 3, 4, 5
    pred, pos, neg = torch.randn(B, L, D, generator=g), torch.randn(B, L, D, generator=g), torch.randn(N, D, generator=g)
    neg[3] = pos[1, 2] * 2.0  # a duplicate of one positive (cosine 1.0 > 0.99)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    target_ids = torch.tensor([[7, 8, 0], [9, 5, 11]])
    neg_ids = torch.tensor([5, 6, 7, 12])
    neg_mask = torch.tensor([[False, True, False, False], [False, False, False, False]])  # user 0 has item 6
    scale = torch.tensor(math.log(1 / 0.07))
    got = info_nce(pred, pos, neg, valid, scale, target_ids=target_ids, neg_ids=neg_ids, neg_mask=neg_mask, dup_threshold=0.99)

    def cos(a, b):
        return float(torch.dot(a, b) / (a.norm() * b.norm()))

    losses = []
    for j in range(B):
        for i in range(L):
            if not valid[j, i]:
                continue
            terms = [cos(pred[j, i], pos[j, i]) / 0.07]
            for k in range(N):
                if neg_ids[k] == target_ids[j, i] or neg_mask[j, k] or cos(pos[j, i], neg[k]) > 0.99:
                    continue
                terms.append(cos(pred[j, i], neg[k]) / 0.07)
            losses.append(-terms[0] + math.log(sum(math.exp(t) for t in terms)))
    assert abs(float(got) - np.mean(losses)) < 1e-4
    # masking really happened: target 7 (j=0,i=0), the user's item 6, and the duplicate of pos[1,2]
    assert len(losses) == 5
    # the gradient reaches the temperature and stays finite despite the -inf masks
    s = scale.clone().requires_grad_(True)
    info_nce(pred, pos, neg, valid, s, target_ids=target_ids, neg_ids=neg_ids, neg_mask=neg_mask).backward()
    assert torch.isfinite(s.grad)


def test_temperature_is_clamped_and_windows(tiny_shop):
    cfg, ds, split = tiny_shop
    w, users = make_windows([np.arange(25), np.arange(3), np.arange(1)], 11, "chunk")
    # user 0: [14..24], [3..13], and the oldest remainder [0, 1, 2] (>= 2 items, kept); user 1: [0, 1, 2]
    assert w.shape == (4, 11) and users.tolist() == [0, 0, 0, 1]
    assert w[0].tolist() == list(range(14, 25)) and w[1].tolist() == list(range(3, 14))
    assert w[2, :3].tolist() == [0, 1, 2] and (w[2, 3:] == -1).all() and w[3, :3].tolist() == [0, 1, 2]
    assert len(make_windows([np.arange(24)], 11, "chunk")[0]) == 3  # remainder [0, 1] kept
    assert len(make_windows([np.arange(23)], 11, "chunk")[0]) == 2  # remainder [0] dropped
    assert len(make_windows([np.arange(25)], 11, "last")[0]) == 1

    m = HLLM({**cfg.params, "item_backbone": "tiny-llama", "user_backbone": "tiny-llama"})
    m.n_items, m.n_users = ds.n_items, ds.n_users
    m.net = m.build(split)
    # an epoch's batches hold every training window exactly once, cut by similar length (less padding)
    ep = m.train_batches(split, torch.Generator().manual_seed(3), 8)
    n_win = len(m._windows[0])
    assert sorted(torch.cat(ep.chunks).tolist()) == list(range(n_win))
    padded = sum(b["seq"].numel() for b in ep)
    assert padded < 0.8 * len(ep.chunks) * 8 * (cfg.params["max_len"] + 1)
    m.net.logit_scale.data.fill_(10.0)  # tau = e^-10 < 0.01
    batch = next(iter(m.train_batches(split, torch.Generator().manual_seed(0), 16)))
    m.loss(batch)
    assert abs(float(m.net.logit_scale.detach()) - math.log(100.0)) < 1e-6


def test_user_llm_is_causal_and_must_be_a_decoder(tiny_shop):
    cfg, ds, split = tiny_shop
    from llmrec.llm.backbones import BackboneError

    for user in ("tiny-llama", "tiny-gpt2"):
        m = HLLM({**cfg.params, "user_backbone": user, "user_overrides": {}})
        m.n_items, m.n_users = ds.n_items, ds.n_users
        net = m.build(split).eval()
        E = torch.randn(2, 6, net.item_emb.shape[1])
        mask = torch.ones(2, 6, dtype=torch.bool)
        E2 = E.clone()
        E2[:, 4:] = torch.randn(2, 2, E.shape[-1])
        with torch.no_grad():
            a, b = net.user_forward(E, mask), net.user_forward(E2, mask)
        assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5) and not torch.allclose(a[:, 4:], b[:, 4:])
        # right padding does not change the real positions
        mask[1, 3:] = False
        E3 = E.clone()
        E3[1, 3:] = 0
        with torch.no_grad():
            c = net.user_forward(E3, mask)
        assert torch.allclose(c[1, :3], a[1, :3], atol=1e-5)
    m = HLLM({**cfg.params, "user_backbone": "tiny-bert", "user_overrides": {}})
    m.n_items, m.n_users = ds.n_items, ds.n_users
    with pytest.raises(BackboneError, match="causal decoder"):
        m.build(split)


def test_cached_mode_learns_and_retrieval_backends_agree(tiny_shop):
    """The tiny config's settings learn the synthetic sequences: far above popularity in 3 short epochs."""
    cfg, ds, split = tiny_shop
    from llmrec.evaluation.evaluator import evaluate
    from llmrec.models.pop import Pop

    m = HLLM(cfg.params)
    m.fit(split, epochs=3, batch_size=16, lr=3e-3, weight_decay=0.01, patience=None, progress=False)
    hllm = evaluate(m, split.test, ks=[10], progress=False)["metrics"]["HR@10"]
    pop = evaluate(Pop().fit(split), split.test, ks=[10], progress=False)["metrics"]["HR@10"]
    assert hllm > max(0.3, 2 * pop), (hllm, pop)
    assert m.fit_info["hllm"]["dup_dropped_share"] < 0.5

    batch = HistoryBatch(split.test.users[:40], split.test.histories[:40])
    s = m.score(batch).masked_fill(batch.history_mask(ds.n_items), float("-inf"))
    ref = torch.topk(s, 10).indices
    exact_ids, _ = m.recommend(batch, 10)
    m.params.retrieval = "faiss"
    m._index = None
    faiss_ids, _ = m.recommend(batch, 10)
    assert torch.equal(exact_ids, faiss_ids)
    assert (exact_ids == ref).float().mean() > 0.95  # equal up to exact ties


def test_end2end_trains_both_tiers(tiny_shop, tmp_path):
    """end2end: the item LLM and its [ITEM] vector get gradients and change; scores use fresh embeddings."""
    cfg, ds, split = tiny_shop
    m = HLLM({**cfg.params, "mode": "end2end", "pooling": "item_token", "dup_threshold": None, "n_negatives": 16,
              "max_len": 5})
    m.n_items, m.n_users = ds.n_items, ds.n_users
    m.net = m.build(split)
    assert m.net.item_encoder is not None and m.net.item_encoder.item_vector.requires_grad
    before = {k: v.clone() for k, v in m.net.item_encoder.state_dict().items()}
    batch = HistoryBatch(split.test.users[:20], split.test.histories[:20])
    s0 = m.score(batch)
    m.fit(split, epochs=1, batch_size=32, lr=1e-3, patience=None, progress=False)
    after = m.net.item_encoder.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "item_vector" in changed and any(k.startswith("model.") for k in changed)
    s1 = m.score(batch)
    assert not torch.allclose(s0, s1)
    # the saved model scores from the saved (fresh) item embeddings without rebuilding the item LLM
    m.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert loaded.net.item_encoder is None
    assert torch.allclose(loaded.score(batch), s1, atol=1e-5)
