"""GenRec: ID-word inputs (Eq. 2), masked-item pretraining, trie-constrained beams, save/load, resume."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_CFG = REPO / "configs" / "tiny" / "genrec.yaml"
TINY_BART = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64}


@pytest.fixture(scope="module")
def tok():
    from llmrec.llm.idtext import id_words
    from llmrec.llm.tiny import train_tokenizer

    return train_tokenizer(id_words(30, 60), style="bpe", vocab_size=200, bos_eos="both")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_thread):
    """The CI config end to end through `run` (fit, save, evaluate), as `llmrec run configs/tiny/genrec.yaml`."""
    import os

    from llmrec.config import load_config
    from llmrec.pipelines.run import run

    out = tmp_path_factory.mktemp("genrec") / "run"
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        t0 = time.perf_counter()
        metrics = run(load_config(TINY_CFG), out)
        secs = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    return out, metrics, secs


def _split():
    import os

    from llmrec.config import load_config
    from llmrec.data.dataset import load_dataset
    from llmrec.pipelines.run import make_split

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        cfg = load_config(TINY_CFG)
        return make_split(load_dataset(cfg.data), cfg)
    finally:
        os.chdir(cwd)


# -- inputs (Eq. 2) -------------------------------------------------------------------------------------
def test_mask_and_non_item_tokens_get_no_item_id(tok):
    from llmrec.llm.idtext import IdText

    it = IdText(tok, 30, 60, max_len=512)
    sp = it.sp
    enc = it.encode([3, 7], [np.array([5, 9, 11]), np.array([2])], mask_at=[1, None], append_mask=False)
    ids, uid, iid, att = enc.input_ids, enc.user_ids, enc.item_ids, enc.attention_mask
    assert int((ids == sp["mask"]).sum()) == 1  # row 0: item 9 -> one [MASK] token
    assert (iid[ids == sp["mask"]] == 0).all() and (uid[ids == sp["mask"]] == 0).all()
    for t in (sp["beg"], sp["end"], sp["pad"]):
        assert (iid[ids == t] == 0).all() and (uid[ids == t] == 0).all()
    assert (iid[att == 0] == 0).all()
    # row 0 reads [BEG] user_4 item_6 [MASK] item_12 [END]: exactly the item tokens carry item ids
    row = ids[0, : int(att[0].sum())].tolist()
    u_tok, i5, i11 = it.user_tokens(3), it.item_tokens[5], it.item_tokens[11]
    assert row == [sp["beg"], *u_tok, *i5, sp["mask"], *i11, sp["end"]]
    n = int(att[0].sum())
    assert iid[0, :n].tolist() == [0] * (1 + len(u_tok)) + [6] * len(i5) + [0] + [12] * len(i11) + [0]
    assert uid[0, :n].tolist() == [0] + [4] * len(u_tok) + [0] * (n - 1 - len(u_tok))
    # finetuning input: [MASK] appended before [END], with no item id either
    enc2 = it.encode([3], [np.array([5, 9])], append_mask=True)
    r = enc2.input_ids[0].tolist()
    assert r[-2:] == [sp["mask"], sp["end"]] and enc2.item_ids[0, -2:].tolist() == [0, 0]


def test_id_embeddings_only_on_id_tokens(tok):
    """Changing every real row of the item-ID table leaves the [MASK], user and special positions unchanged."""
    from transformers import BartConfig, BartForConditionalGeneration

    from llmrec.llm.idtext import IdText
    from llmrec.models.genrec import GenRecNet

    it = IdText(tok, 30, 60)
    cfg = BartConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, pad_token_id=it.sp["pad"],
                     bos_token_id=it.sp["beg"], eos_token_id=it.sp["end"], decoder_start_token_id=it.sp["end"])
    net = GenRecNet(BartForConditionalGeneration(cfg), 30, 60, 16, 0.02, 1.0)
    assert net.item_id.weight[0].abs().sum() == 0 and net.user_id.weight[0].abs().sum() == 0
    enc = it.encode([3], [np.array([5, 9, 11])], append_mask=True)
    with torch.no_grad():
        a = net.input_embeds(enc)
        net.item_id.weight[1:] += 1.0
        b = net.input_embeds(enc)
    changed = (a - b).abs().sum(-1)[0] > 0
    assert torch.equal(changed, enc.item_ids[0] > 0)  # exactly the item tokens moved; the [MASK] did not


def test_truncation_drops_oldest_items_keeps_user_mask_end(tok):
    from llmrec.llm.idtext import IdText

    it = IdText(tok, 30, 60, max_len=24)
    hist = np.arange(40) % 60
    enc = it.encode([2], [hist], append_mask=True)
    ids = enc.input_ids[0].tolist()
    sp = it.sp
    assert len(ids) <= 24 and enc.truncated == 1
    assert ids[0] == sp["beg"] and ids[1: 1 + len(it.user_tokens(2))] == it.user_tokens(2)
    assert ids[-2:] == [sp["mask"], sp["end"]]
    kept = [i - 1 for i in dict.fromkeys(enc.item_ids[0].tolist()) if i > 0]
    assert kept == hist[-len(kept):].tolist() and len(kept) < len(hist)  # the newest items, in order


def test_pretraining_masks_one_item_never_the_user(one_thread):
    from llmrec.models.genrec import GenRec

    split = _split()
    m = GenRec({"overrides": TINY_BART, "tiny_vocab": 300, "p_mask_last": 0.0})
    m.n_items, m.n_users = split.n_items, split.n_users
    m.net = m.build(split)
    seqs = [np.asarray(s) for s in split.train]
    users = np.arange(len(seqs))
    make = m._pretrain_batches(seqs, users, 16, seed=1)
    sp = m.idtext.sp
    last = 0
    for step in range(6):
        b = make(step)
        enc, lab = b["enc"], b["labels"]
        assert ((enc.input_ids == sp["mask"]).sum(1) == 1).all()  # exactly one [MASK] per row
        assert (enc.item_ids[enc.input_ids == sp["mask"]] == 0).all()
        assert ((enc.user_ids > 0).sum(1) > 0).all()  # the user token is never masked
        for r in range(len(lab)):
            tgt = [t for t in lab[r].tolist() if t != -100]
            assert tgt[-1] == sp["end"]
            item = m.trie.lookup(tgt[:-1])
            assert item is not None
            present = set((enc.item_ids[r][enc.item_ids[r] > 0] - 1).tolist())
            u = int(enc.user_ids[r].max()) - 1
            # the target is an item of the user's sequence; every other item of it is still in the input
            assert item in set(seqs[u].tolist()) and present <= set(seqs[u].tolist())
            pos = int((enc.input_ids[r] == sp["mask"]).nonzero()[0, 0])
            last += int(enc.input_ids[r, pos + 1] == sp["end"])
    assert make(3)["labels"].tolist() == make(3)["labels"].tolist()  # the batch of a step is deterministic
    assert last < 6 * 16  # p_mask_last 0: not always the last item
    m2 = GenRec({"overrides": TINY_BART, "tiny_vocab": 300, "p_mask_last": 1.0})
    m2.n_items, m2.n_users, m2.net = m.n_items, m.n_users, m.net
    m2.idtext, m2.tokenizer = m.idtext, m.tokenizer
    b = m2._pretrain_batches(seqs, users, 16, seed=1)(0)
    pos = (b["enc"].input_ids == sp["mask"]).float().argmax(1)
    assert (b["enc"].input_ids[torch.arange(len(pos)), pos + 1] == sp["end"]).all()  # always the last item


def test_excluding_trie_constraint():
    from llmrec.llm.decoding import Trie, TrieConstraint

    seqs = [[5, 1], [5, 2], [6, 1], [5, 2, 3]]
    trie = Trie(seqs)
    c = TrieConstraint(trie, [9], exclude=[0, 2], item_tokens=seqs)
    assert c.allowed([]) == [5]  # every item under 6 is excluded
    assert c.allowed([5]) == [2]
    assert sorted(c.allowed([5, 2])) == [3, 9]  # item 1 complete (end allowed) or continue to item 3
    assert c.allowed([5, 2, 9]) == []
    assert c.allowed([5, 1]) == []


# -- end to end -----------------------------------------------------------------------------------------
def test_tiny_config_end_to_end(tiny_run):
    # wall time is reported by pytest --durations (scripts/test.sh), never asserted: it depends on the machine's load
    out, _metrics, _secs = tiny_run
    assert (out / "model" / "config.json").exists() and (out / "model" / "model.safetensors").exists()
    m = json.loads((out / "metrics.json").read_text())
    for name in ("valid", "test"):
        g = m["generation"][name]
        assert g["users"] == m["split_sizes"][f"{name}_examples"] == 200  # every tiny-shop user was generated for
        assert g["invalid"] == 0 and g["duplicates"] == 0 and g["history_items"] == 0
        assert g["sequences"] == 20 * g["users"]
    fi = m["fit_info"]
    assert fi["phases"]["pretrain"]["steps"] > 0 and fi["phases"]["finetune"]["steps"] > 0
    assert fi["best_phase"] == "finetune" and fi["history"]
    assert 0.0 <= m["metrics"]["test"]["NDCG@10"] <= 1.0


def test_saved_model_dir_lists_are_valid_and_match(tiny_run):
    """Load DIR/model (rebuilt from config.json + safetensors, tokenizer included): every list holds 20 distinct
    real items outside the history, and the scores equal the run's own test predictions."""
    import polars as pl

    from llmrec.models.base import HistoryBatch, Recommender

    out, _, _ = tiny_run
    m = Recommender.load(out / "model")
    split = _split()
    t = split.test
    idx = np.arange(min(40, len(t)))
    batch = HistoryBatch(t.users[idx], [t.histories[i] for i in idx])
    rows = m.generate_lists(batch)
    for r, h in zip(rows, batch.histories):
        assert len(r["items"]) == 20 and len(set(r["items"])) == 20
        assert all(0 <= i < m.n_items for i in r["items"])
        assert not set(r["items"]) & set(h.tolist())
        assert r["invalid"] == 0 and r["duplicates"] == 0
    pred = pl.read_parquet(out / "predictions.parquet")
    saved = {int(u): list(it) for u, it in zip(pred["user"], pred["items"])}
    assert all(saved[int(r["user"])] == r["items"] for r in rows)
    s = m.score(batch)
    assert s.shape == (len(idx), m.n_items) and (torch.isfinite(s).sum(1) == 20).all()


def test_unconstrained_beams_count_invalid_items(tiny_run):
    """With the trie switched off an untrained-ish model spells non-items; they are counted and dropped."""
    from llmrec.models.base import HistoryBatch, Recommender

    out, _, _ = tiny_run
    m = Recommender.load(out / "model")
    with torch.no_grad():  # scramble the decoder's output layer so that invalid strings certainly appear
        torch.manual_seed(0)
        w = m.net.lm.get_output_embeddings().weight
        w.copy_(torch.randn_like(w))
    m.params.constrained = False
    t = _split().test
    batch = HistoryBatch(t.users[:20], [t.histories[i] for i in range(20)])
    m.begin_eval("test")
    m.score(batch)
    rep = m.end_eval()
    assert rep["invalid"] > 0 and rep["invalid_rate"] > 0 and not rep["constrained"]
    m.params.constrained = True
    m.begin_eval("test")
    m.score(batch)
    rep = m.end_eval()
    assert rep["invalid"] == 0 and rep["duplicates"] == 0


def test_history_kept_when_masking_is_off(tiny_run):
    from llmrec.models.base import HistoryBatch, Recommender

    out, _, _ = tiny_run
    m = Recommender.load(out / "model")
    m._mask_history = False
    t = _split().test
    batch = HistoryBatch(t.users[:30], [t.histories[i] for i in range(30)])
    rows = m.generate_lists(batch)
    assert sum(r["history"] for r in rows) > 0  # repeats are allowed (Yelp) ...
    assert all(len(set(r["items"])) == len(r["items"]) == 20 for r in rows)  # ... and kept in the list


def test_resume_is_exact(tmp_path, one_thread):
    """A fit interrupted mid-phase and resumed from its checkpoint ends with the same weights as an uninterrupted one."""
    from llmrec.config import load_config
    from llmrec.models.genrec import GenRec

    split = _split()
    cfg = load_config(TINY_CFG, ["params.pretrain_steps=6", "params.finetune_steps=8", "params.checkpoint_every=3",
                                 "params.eval_every=4", "train.max_eval_users=20", "params.num_beams=4", "params.top_k=4"])
    a = GenRec(cfg.params).fit(split, cfg=cfg, run_dir=tmp_path / "a", progress=False)

    b = GenRec(cfg.params)
    calls = {"n": 0}
    real = GenRec.loss

    def boom(self, batch):
        calls["n"] += 1
        if calls["n"] == 11:  # pretraining 6 + finetuning 4 done, checkpoint after finetune step 3/4
            raise KeyboardInterrupt
        return real(self, batch)

    GenRec.loss = boom
    try:
        with pytest.raises(KeyboardInterrupt):
            b.fit(split, cfg=cfg, run_dir=tmp_path / "b", progress=False)
    finally:
        GenRec.loss = real
    c = GenRec(cfg.params).fit(split, cfg=cfg, run_dir=tmp_path / "b", resume=True, progress=False)
    sa, sc = a.state_tensors(), c.state_tensors()
    assert sa.keys() == sc.keys()
    assert all(torch.equal(sa[k], sc[k]) for k in sa)
    assert c.fit_info["phases"]["finetune"]["steps"] == 8
    assert [h["valid"] for h in a.fit_info["history"]] == [h["valid"] for h in c.fit_info["history"]]
    # resuming with another setting is refused with the key named, not a traceback of a ValueError
    from llmrec.training.checkpoint import CheckpointError

    cfg2 = load_config(TINY_CFG, ["params.pretrain_steps=7", "params.finetune_steps=8", "params.checkpoint_every=3",
                                  "params.eval_every=4", "train.max_eval_users=20", "params.num_beams=4", "params.top_k=4"])
    with pytest.raises(CheckpointError, match="pretrain_steps"):
        GenRec(cfg2.params).fit(split, cfg=cfg2, run_dir=tmp_path / "b", resume=True, progress=False)


def test_params_are_validated():
    from llmrec.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="p_mask_last"):
        load_config(TINY_CFG, ["params.p_mask_last=1.5"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(TINY_CFG, ["params.beam_size=5"])


def test_causal_backbone_is_refused(tmp_path):
    from llmrec.llm.backbones import BackboneError
    from llmrec.models.genrec import GenRec

    split = _split()
    m = GenRec({"backbone": "tiny-llama"})
    m.n_items, m.n_users = split.n_items, split.n_users
    with pytest.raises(BackboneError, match="tiny-bart"):
        m.build(split)


def _fit_small(params: dict, split, tmp_path, steps: int = 3):
    from llmrec.config import TrainConfig
    from llmrec.models.genrec import GenRec

    m = GenRec({"pretrain_steps": 2, "finetune_steps": steps, "num_beams": 20, "top_k": 20, "gen_batch_size": 8, **params})
    sub = split.valid.subset(np.arange(4))
    split.valid, full_valid = sub, split.valid
    try:
        m.fit(split, cfg=TrainConfig(batch_size=4, lr=1e-4, patience=None), run_dir=tmp_path, progress=False)
    finally:
        split.valid = full_valid
    return m


@pytest.mark.parametrize("backbone", ["tiny-bert", "minilm"])
def test_encoder_warm_started_as_encoder_decoder(backbone, tmp_path, one_thread):
    """An encoder backbone (tiny-bert; the packaged MiniLM) becomes a transformers EncoderDecoderModel on both
    sides; it trains, generates only real items, and survives save/load."""
    from llmrec.llm import packaged
    from llmrec.models.base import HistoryBatch, Recommender

    if backbone == "minilm" and not packaged.is_available("minilm"):
        pytest.skip("the packaged MiniLM is not installed")
    split = _split()
    over = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64} if backbone == "tiny-bert" else {}
    m = _fit_small({"backbone": backbone, "overrides": over, "max_len": 128}, split, tmp_path)
    assert type(m.net.lm).__name__ == "EncoderDecoderModel"
    assert m.fit_info["genrec"]["arch"] == "encoder-decoder"
    t = split.test
    batch = HistoryBatch(t.users[:2], [t.histories[i] for i in range(2)])
    rows = m.generate_lists(batch)
    for r, h in zip(rows, batch.histories):
        assert len(r["items"]) == 20 == len(set(r["items"])) and r["invalid"] == 0
        assert not set(r["items"]) & set(h.tolist())
    m.save(tmp_path / "model")
    m2 = Recommender.load(tmp_path / "model")
    assert [r["items"] for r in m2.generate_lists(batch)] == [r["items"] for r in rows]
