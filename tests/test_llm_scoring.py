"""llmrec.llm.scoring: shared-prefix KV-cache scoring equals full-prompt scoring, on tiny random models."""

import numpy as np
import pytest
import torch

from llmrec.llm import scoring, tiny
from llmrec.llm.backbones import load_backbone
from llmrec.llm.lora import apply_lora

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["the user bought lipstick and mascara", "recommend the next item from the history",
         "Answer Yes or No:", "Yes", "No", "nail polish red blue shampoo perfume brush"] * 3
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}

PREFIXES = ["User bought lipstick, mascara and nail polish. Will the user like",
            "recommend the next item",
            "Answer"]
SUFFIXES = [[" red nail polish? Answer Yes or No:", " shampoo?", "", " perfume brush and a very long mascara title?"],
            [" lipstick", " x"],
            [" Yes or No:", " the user", " nail polish red blue shampoo perfume brush lipstick mascara", " No"]]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {a: tiny.build_tiny(a, root / a, TEXTS, vocab_size=300, overrides=SMALL if a == "tiny-llama" else
                               {"n_embd": 32, "n_layer": 2, "n_head": 4}) for a in ("tiny-llama", "tiny-gpt2")}


def _bb(dirs, arch="tiny-llama"):
    return load_backbone(str(dirs[arch]), head=True)


def _manual_last_logits(bb, prefix, suffix):
    ids = scoring.encode_prefix(bb.tokenizer, prefix) + scoring.encode_suffix(bb.tokenizer, suffix)
    with torch.no_grad():
        return bb.model(input_ids=torch.tensor([ids])).logits[0, -1].float()


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("mode", ["softmax", "yes_prob"])
def test_prefix_cache_scores_equal_full_prompt_scores(dirs, arch, mode):
    bb = _bb(dirs, arch)
    cached = scoring.yes_no_scores(bb, PREFIXES, SUFFIXES, yes="Yes", no="No", mode=mode, batch_size=3, progress=False)
    full = scoring.yes_no_scores(bb, PREFIXES, SUFFIXES, yes="Yes", no="No", mode=mode, use_prefix_cache=False,
                                 batch_size=2, progress=False)
    one = scoring.yes_no_scores(bb, PREFIXES, SUFFIXES, yes="Yes", no="No", mode=mode, batch_size=1, progress=False)
    assert [len(a) for a in cached] == [len(s) for s in SUFFIXES]
    for c, f, o in zip(cached, full, one):
        np.testing.assert_allclose(c, f, atol=1e-4, rtol=0)
        np.testing.assert_allclose(c, o, atol=1e-5, rtol=0)  # a score does not depend on its batch-mates
    assert np.ptp(np.concatenate(cached)) > 1e-6  # not a constant

    # against an independent single-sequence forward pass
    y, n = scoring.single_token_id(bb.tokenizer, "Yes"), scoring.single_token_id(bb.tokenizer, "No")
    for i, (p, sufs) in enumerate(zip(PREFIXES, SUFFIXES)):
        for j, s in enumerate(sufs):
            lg = _manual_last_logits(bb, p, s)
            want = torch.softmax(lg[[y, n]], -1)[0] if mode == "softmax" else torch.softmax(lg, -1)[y]
            assert abs(cached[i][j] - float(want)) < 1e-4


def test_continuation_logprobs_cached_equals_full_and_manual(dirs):
    bb = _bb(dirs)
    conts = [[s or " z" for s in sufs] for sufs in SUFFIXES]
    for reduce in ("mean", "sum"):
        c = scoring.continuation_logprobs(bb, PREFIXES, conts, reduce=reduce, batch_size=2, progress=False)
        f = scoring.continuation_logprobs(bb, PREFIXES, conts, reduce=reduce, use_prefix_cache=False, progress=False)
        for a, b in zip(c, f):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    s = scoring.continuation_logprobs(bb, PREFIXES, conts, reduce="sum", progress=False)
    m = scoring.continuation_logprobs(bb, PREFIXES, conts, reduce="mean", progress=False)
    tok = bb.tokenizer
    for i, (p, cs) in enumerate(zip(PREFIXES, conts)):
        P = scoring.encode_prefix(tok, p)
        for j, cont in enumerate(cs):
            C = scoring.encode_suffix(tok, cont)
            with torch.no_grad():
                lp = torch.log_softmax(bb.model(input_ids=torch.tensor([P + C])).logits[0].float(), -1)
            want = sum(float(lp[len(P) - 1 + t, C[t]]) for t in range(len(C)))
            assert abs(s[i][j] - want) < 1e-4
            assert abs(m[i][j] - want / len(C)) < 1e-4


def test_lora_wrapped_model_and_mode_are_left_alone(dirs):
    bb = _bb(dirs)
    torch.manual_seed(0)
    bb.model = apply_lora(bb.model, {"r": 4, "alpha": 8, "dropout": 0.3})
    with torch.no_grad():  # non-zero adapters, so that the wrapper matters
        for n_, p in bb.model.named_parameters():
            if "lora_B" in n_:
                p.normal_(0, 0.5)
    bb.model.train()  # dropout on: scoring must switch it off and restore train mode
    c = scoring.yes_no_scores(bb, PREFIXES, SUFFIXES, yes="Yes", no="No", progress=False)
    assert bb.model.training
    f = scoring.yes_no_scores(bb, PREFIXES, SUFFIXES, yes="Yes", no="No", use_prefix_cache=False, progress=False)
    for a, b in zip(c, f):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    bb.model.eval()
    again = scoring.yes_no_scores(bb, PREFIXES, SUFFIXES, yes="Yes", no="No", progress=False)
    for a, b in zip(c, again):
        np.testing.assert_array_equal(a, b)  # deterministic: dropout was off, the cache is never reused mutated
    assert not bb.model.training
    assert all(p.grad is None for p in bb.model.parameters())


def test_errors(dirs):
    bb = _bb(dirs)
    with pytest.raises(scoring.ScoringError, match="not one"):
        scoring.yes_no_scores(bb, ["a"], [["b"]], yes="lipstick mascara nail", no="No", progress=False)
    with pytest.raises(scoring.ScoringError, match="prefixes"):
        scoring.yes_no_scores(bb, ["a", "b"], [["b"]], yes="Yes", no="No", progress=False)
    with pytest.raises(scoring.ScoringError, match="mode"):
        scoring.yes_no_scores(bb, ["a"], [["b"]], yes="Yes", no="No", mode="odds", progress=False)
    with pytest.raises(scoring.ScoringError, match="empty continuation"):
        scoring.continuation_logprobs(bb, ["a"], [[""]], progress=False)
    assert scoring.yes_no_scores(bb, ["a"], [[]], yes="Yes", no="No", progress=False)[0].shape == (0,)
    enc = load_backbone("tiny-bert", texts=TEXTS, tiny_vocab=300, overrides={"hidden_size": 32, "num_hidden_layers": 1})
    with pytest.raises(scoring.ScoringError, match="causal"):
        scoring.yes_no_scores(enc, ["a"], [["b"]], yes="Yes", no="No", progress=False)


def test_prefix_tokenisation_adds_bos_once(dirs):
    tok = _bb(dirs).tokenizer
    plain = scoring.encode_prefix(tok, "recommend the next item")
    assert plain[0] == tok.bos_token_id and plain[1:] == scoring.encode_suffix(tok, "recommend the next item")
    assert scoring.encode_prefix(tok, "<s>recommend the next item") == plain  # text with its BOS: not doubled
    assert scoring.encode_suffix(tok, "") == []
