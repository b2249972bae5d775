"""llmrec.llm.tuning: instruction tuning (labels, loss, checkpoints, exact resume, budget) on a tiny Llama."""

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from llmrec.llm import scoring, tiny
from llmrec.llm.backbones import load_backbone
from llmrec.llm.prompts import as_model_input
from llmrec.llm.tuning import (
    SFTExample,
    TuningSettings,
    collate,
    effective_fingerprint,
    encode_examples,
    epoch_batches,
    instruction_tune,
    load_trainable_state,
    state_hash,
    trainable_state,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ITEMS = ["red lipstick", "black mascara", "blue nail polish", "rose perfume", "mint shampoo", "soft brush",
         "green eyeliner", "white soap"]
TEXTS = [f"User bought {a} and {b}. Recommend the next item:" for a in ITEMS for b in ITEMS[:3]] + ITEMS
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
# 16 examples with a learnable rule: the answer is the item after the last one bought
EXAMPLES = [SFTExample(f"User bought {ITEMS[i % 8]} and {ITEMS[(i + 3) % 8]}. Recommend the next item:",
                       f" {ITEMS[(i + 4) % 8]}") for i in range(16)]
BASE = {"lr": 1e-2, "batch_size": 4, "grad_accum": 2, "max_steps": 8, "warmup_ratio": 0.2, "checkpoint_every": 3,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny.build_tiny("tiny-llama", tmp_path_factory.mktemp("tiny") / "m", TEXTS, vocab_size=300, overrides=SMALL)


def _bb(model_dir):
    return load_backbone(str(model_dir), head=True)


@pytest.fixture(scope="module")
def reference(model_dir, tmp_path_factory):
    """An uninterrupted run with checkpoints (the one resumed runs must reproduce)."""
    bb = _bb(model_dir)
    run = tmp_path_factory.mktemp("ref")
    info = instruction_tune(bb, EXAMPLES, TuningSettings(**BASE), run_dir=run, progress=False)
    return bb, info, run


def _response_logprob(bb):
    prefixes = [as_model_input(bb.tokenizer, ex.prompt) for ex in EXAMPLES]
    return float(np.mean(scoring.continuation_logprobs(bb, prefixes, [[ex.response] for ex in EXAMPLES], progress=False)))


def test_labels_mask_the_prompt_exactly_and_truncate_from_the_left(model_dir):
    tok = _bb(model_dir).tokenizer
    s = TuningSettings()
    enc = encode_examples(tok, EXAMPLES[:3], s)
    b = collate(enc, [0, 1, 2], tok.pad_token_id, "response")
    for row, ex in enumerate(EXAMPLES[:3]):
        p = scoring.encode_prefix(tok, as_model_input(tok, ex.prompt))
        r = scoring.encode_suffix(tok, ex.response) + [tok.eos_token_id]
        assert p[0] == tok.bos_token_id and enc.ids[row] == p + r and enc.n_prompt[row] == len(p)
        lab = b["labels"][row].tolist()
        assert lab[:len(p)] == [-100] * len(p)
        assert lab[len(p):len(p) + len(r)] == r
        assert lab[len(p) + len(r):] == [-100] * (b["labels"].shape[1] - len(p) - len(r))
        assert b["attention_mask"][row].sum() == len(p) + len(r)
    ball = collate(enc, [0], tok.pad_token_id, "all")
    assert ball["labels"][0].tolist() == enc.ids[0]

    full = enc.ids[0]
    short = encode_examples(tok, EXAMPLES[:3], TuningSettings(max_length=len(full) - 4))
    assert short.n_truncated >= 1
    r = scoring.encode_suffix(tok, EXAMPLES[0].response) + [tok.eos_token_id]
    assert len(short.ids[0]) == len(full) - 4
    assert short.ids[0][0] == tok.bos_token_id  # BOS kept, the prompt's start cut, the response whole
    assert short.ids[0][-len(r):] == r and short.ids[0][1:-len(r)] == full[5:-len(r)]
    with pytest.raises(ValueError, match="response alone"):
        encode_examples(tok, [SFTExample("a", " ".join(ITEMS * 4))], TuningSettings(max_length=8))


def test_settings_are_validated():
    with pytest.raises(ValidationError):
        TuningSettings(learning_rate=1e-4)
    with pytest.raises(ValidationError):
        TuningSettings(lr=-1)
    with pytest.raises(ValidationError):
        TuningSettings(schedule="step")
    with pytest.raises(ValidationError):
        TuningSettings(lora={"r": 0})


def test_length_bucketing_is_seeded_and_covers_every_example():
    lengths = list(np.random.default_rng(0).integers(5, 100, size=300))
    a = epoch_batches(lengths, 4, True, seed=1, epoch=0)
    assert sorted(np.concatenate(a).tolist()) == list(range(300))
    assert all(len(b) <= 4 for b in a)
    assert [x.tolist() for x in a] == [x.tolist() for x in epoch_batches(lengths, 4, True, seed=1, epoch=0)]
    assert [x.tolist() for x in a] != [x.tolist() for x in epoch_batches(lengths, 4, True, seed=1, epoch=1)]
    spread = np.mean([np.ptp(np.asarray(lengths)[b]) for b in a])
    rand = np.mean([np.ptp(np.asarray(lengths)[b]) for b in epoch_batches(lengths, 4, False, seed=1, epoch=0)])
    assert spread < rand / 5  # batches hold examples of similar length


def test_tuning_lowers_the_loss_and_leaves_eval_mode(model_dir, reference):
    before = _response_logprob(_bb(model_dir))
    bb, info, _ = reference
    assert info["steps"] == 8 and info["total_steps"] == 8 and not info["stopped_by_budget"]
    assert info["examples_seen"] == 8 * 8 and info["method"] == "lora"
    assert np.mean(info["losses"][-2:]) < info["losses"][0]
    assert not bb.model.training
    after = _response_logprob(bb)
    assert after > before + 0.1, (before, after)  # the responses became more likely
    assert effective_fingerprint(bb) != bb.fingerprint and info["trainable_hash"] in effective_fingerprint(bb)


def test_lora_checkpoint_holds_only_adapters_and_reloads(model_dir, reference):
    bb, info, run = reference
    root = run / "tuning"
    last = json.loads((root / "latest.json").read_text())["last"]
    assert last == "step-0000008" and [d.name for d in root.iterdir() if d.is_dir()] == [last]
    saved = load_file(str(root / last / "trainable.safetensors"))
    assert saved and all("lora_A" in k or "lora_B" in k for k in saved)
    assert sum(t.numel() for t in saved.values()) == info["trainable_params"]
    state = trainable_state(bb)
    assert set(saved) == set(state) and all(torch.equal(saved[k], state[k]) for k in saved)
    assert json.loads((root / "info.json").read_text())["steps"] == 8

    fresh = _bb(model_dir)  # a finished run resumes as "load the weights"
    again = instruction_tune(fresh, EXAMPLES, TuningSettings(**BASE), run_dir=run, resume=True, progress=False)
    assert again["steps_this_run"] == 0 and state_hash(trainable_state(fresh)) == state_hash(state)
    with pytest.raises(ValueError, match="cannot resume"):
        instruction_tune(_bb(model_dir), EXAMPLES[:8], TuningSettings(**BASE), run_dir=run, resume=True, progress=False)


def test_resume_after_a_crash_and_after_a_budget_stop_is_exact(model_dir, reference, tmp_path):
    ref_bb, ref_info, _ = reference
    want = trainable_state(ref_bb)

    def crash(step, loss):
        if step == 5:
            raise KeyboardInterrupt  # killed after step 5; the last checkpoint is step 3

    with pytest.raises(KeyboardInterrupt):
        instruction_tune(_bb(model_dir), EXAMPLES, TuningSettings(**BASE), run_dir=tmp_path / "a", callback=crash,
                         progress=False)
    bb = _bb(model_dir)
    info = instruction_tune(bb, EXAMPLES, TuningSettings(**BASE), run_dir=tmp_path / "a", resume=True, progress=False)
    assert info["resumed_from_step"] == 3 and info["steps"] == 8
    got = trainable_state(bb)
    assert all(torch.allclose(got[k], want[k], atol=1e-6, rtol=0) for k in want)
    assert info["losses"] == pytest.approx(ref_info["losses"], abs=1e-6)

    b = instruction_tune(_bb(model_dir), EXAMPLES, TuningSettings(**BASE, max_minutes=1e-6), run_dir=tmp_path / "b",
                         progress=False)
    assert b["stopped_by_budget"] and b["steps"] == 1
    assert json.loads((tmp_path / "b" / "tuning" / "latest.json").read_text())["last"] == "step-0000001"
    bb2 = _bb(model_dir)
    done = instruction_tune(bb2, EXAMPLES, TuningSettings(**BASE), run_dir=tmp_path / "b", resume=True, progress=False)
    assert done["resumed_from_step"] == 1 and not done["stopped_by_budget"]
    got2 = trainable_state(bb2)
    assert all(torch.allclose(got2[k], want[k], atol=1e-6, rtol=0) for k in want)


def test_full_finetuning_grad_accum_and_trainable_state_round_trip(model_dir):
    s1 = TuningSettings(method="full", lr=1e-3, batch_size=4, grad_accum=1, max_steps=2, length_bucketing=False,
                        warmup_ratio=0.0, loss_on="all")
    s2 = s1.model_copy(update={"batch_size": 2, "grad_accum": 2})
    a, b = _bb(model_dir), _bb(model_dir)
    base = trainable_state(a)
    ia = instruction_tune(a, EXAMPLES, s1, progress=False)
    instruction_tune(b, EXAMPLES, s2, progress=False)
    sa, sb = trainable_state(a), trainable_state(b)
    assert set(sa) == {k for k, _ in a.model.named_parameters()} and ia["trainable_params"] == ia["total_params"]
    assert any(not torch.equal(sa[k], base[k]) for k in sa)
    # the loss of a step is the mean over all its tokens, so 2 x 2 accumulated == one batch of 4
    assert all(torch.allclose(sa[k], sb[k], atol=1e-5) for k in sa)
    c = _bb(model_dir)
    load_trainable_state(c, sa)
    pre = [as_model_input(c.tokenizer, EXAMPLES[0].prompt)]
    np.testing.assert_allclose(scoring.continuation_logprobs(c, pre, [[" soap"]], progress=False)[0],
                               scoring.continuation_logprobs(a, pre, [[" soap"]], progress=False)[0], atol=1e-6)
    with pytest.raises(ValueError, match="LoRA"):
        load_trainable_state(_bb(model_dir), load_file_like_lora())


def load_file_like_lora():
    return {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 32)}
