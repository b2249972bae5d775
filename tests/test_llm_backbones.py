"""llmrec.llm: tiny architectures, the one loading path, item encoders, text templates, the embedding cache, LoRA."""

import os

import numpy as np
import polars as pl
import pytest
import torch

pytest.importorskip("transformers")

from llmrec.llm import backbones, embeddings, text, tiny  # noqa: E402
from llmrec.llm.backbones import BackboneError, load_backbone  # noqa: E402
from llmrec.llm.embeddings import ItemEncoder, cached_item_embeddings, encode_tokens  # noqa: E402

TEXTS = [
    "red matte lipstick",
    "blue nail polish long lasting shiny finish",
    "shampoo",
    "",
    "black waterproof mascara for extra long lashes and volume",
    "rose perfume 50 ml",
] * 5


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """Every tiny architecture, built once and saved to a temp dir (as a user's own model directory would be)."""
    root = tmp_path_factory.mktemp("tiny")
    return {a: tiny.build_tiny(a, root / a, TEXTS, vocab_size=300) for a in tiny.TINY_ARCHS}


def test_hub_is_offline():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.mark.parametrize("arch,kind,cls", [("tiny-llama", "causal", "LlamaModel"), ("tiny-bert", "encoder", "BertModel"),
                                           ("tiny-bart", "seq2seq", "BartModel"), ("tiny-gpt2", "causal", "GPT2Model")])
def test_tiny_models_load_from_a_directory_like_any_hf_model(tiny_dirs, arch, kind, cls):
    d = tiny_dirs[arch]
    assert (d / "config.json").exists() and (d / "model.safetensors").exists() and (d / "tokenizer.json").exists()
    bb = load_backbone(str(d))  # a plain directory: the path a 7B Llama takes on a GPU box
    assert bb.kind == kind and type(bb.model).__name__ == cls
    assert bb.device.type == "cpu" and bb.dtype == torch.float32  # auto on a CPU box
    assert bb.tokenizer.pad_token_id is not None
    ids = bb.tokenizer("red lipstick")["input_ids"]
    assert len(ids) >= 2 and bb.tokenizer.unk_token_id not in ids[1:-1]  # the tokenizer was trained on these words
    # the tiny spec resolves to a cached directory and loads identically
    bb2 = load_backbone(arch, texts=TEXTS, tiny_vocab=300)
    assert bb2.fingerprint == bb.fingerprint
    head = load_backbone(str(d), head=True)
    if kind != "encoder":
        assert isinstance(head.generate_text("red", max_new_tokens=3, chat=False), str)


def test_scratch_init_keeps_architecture_changes_weights(tiny_dirs):
    d = str(tiny_dirs["tiny-llama"])
    a, b = load_backbone(d), load_backbone(d, init="scratch", seed=1)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)
    assert a.fingerprint != b.fingerprint
    c = load_backbone(d, init="scratch", seed=1)
    assert all(torch.equal(sb[k], v) for k, v in c.model.state_dict().items())


def test_overrides_and_errors(tiny_dirs, tmp_path):
    bb = load_backbone("tiny-llama", overrides={"hidden_size": 48, "num_attention_heads": 4, "num_hidden_layers": 1})
    assert bb.hidden_size == 48 and bb.config.num_hidden_layers == 1
    # a pretrained directory with fewer layers keeps the first ones
    one = load_backbone(str(tiny_dirs["tiny-llama"]), overrides={"num_hidden_layers": 1})
    full = load_backbone(str(tiny_dirs["tiny-llama"]))
    assert len(one.model.layers) == 1
    assert torch.equal(one.model.layers[0].mlp.up_proj.weight, full.model.layers[0].mlp.up_proj.weight)
    with pytest.raises(BackboneError, match="nothing is downloaded"):
        load_backbone("meta-llama/Llama-2-7b-hf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="config.json"):
        load_backbone(str(tmp_path / "empty"))
    with pytest.raises(BackboneError, match="causal"):
        load_backbone(str(tiny_dirs["tiny-bert"]), expect_kind="causal")


def test_device_dtype_and_switches(tiny_dirs):
    assert backbones.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert backbones.resolve_dtype("auto", "cpu") == torch.float32
    assert backbones.resolve_dtype("bf16", "cpu") == torch.bfloat16
    bb = load_backbone(str(tiny_dirs["tiny-llama"]), gradient_checkpointing=True)
    assert backbones.is_checkpointing(bb.model)
    lo = load_backbone(str(tiny_dirs["tiny-llama"]), lora={"r": 4, "alpha": 8})
    from llmrec.llm.lora import is_peft, lora_state_dict, trainable_parameters

    assert is_peft(lo.model)
    tr, tot = trainable_parameters(lo.model)
    assert 0 < tr < tot
    st = lora_state_dict(lo.model)
    assert st and all("lora" in k for k in st)


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-bert", "tiny-bart", "tiny-gpt2"])
@pytest.mark.parametrize("pooling", ["item_token", "mean"])
def test_item_embedding_does_not_depend_on_the_batch(tiny_dirs, arch, pooling):
    """Padding invariance: an item alone or batched with longer items gives the same embedding."""
    bb = load_backbone(str(tiny_dirs[arch]))
    enc = ItemEncoder(bb.encoder_module(), bb.hidden_size, pooling, pad_id=bb.tokenizer.pad_token_id)
    ids = text.tokenize_texts(bb.tokenizer, TEXTS[:6], 24, prompt="item: ")
    with torch.no_grad():
        alone = torch.cat([enc([x]) for x in ids])
        batched = enc(ids)
    assert torch.allclose(alone, batched, atol=1e-5)
    # the batched encoder sorts by length and scatters back into index order
    assert torch.allclose(encode_tokens(enc, ids, batch_size=4, progress=False), alone, atol=1e-5)


def test_item_token_is_learned_and_differentiable(tiny_dirs):
    bb = load_backbone(str(tiny_dirs["tiny-llama"]))
    enc = ItemEncoder(bb.encoder_module(), bb.hidden_size, "item_token", pad_id=bb.tokenizer.pad_token_id)
    ids = text.tokenize_texts(bb.tokenizer, TEXTS[:3], 16)
    enc(ids).sum().backward()
    assert enc.item_vector.grad is not None and enc.item_vector.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pooling"):
        ItemEncoder(bb.model, bb.hidden_size, "max")


class _DS:
    name = "beauty"
    n_items = 4
    item_text = pl.DataFrame({"item": [0, 1, 3], "title": ["Red Lipstick", None, "nan"], "description": ["matte", "x", "y"]})

    def text_columns(self):
        return ["title", "description"]


def test_templates():
    ds = _DS()
    assert text.item_texts(ds, "auto") == ["Red Lipstick", "", "", ""]  # Beauty: titles; missing/None/nan -> ""
    assert text.item_texts(ds, "{title} ({description})")[0] == "Red Lipstick (matte)"
    # HLLM's official layout: "key: value" fields without a separator, empty ones skipped
    assert text.item_texts(ds, "kv:title,description") == ["title: Red Lipstickdescription: matte", "description: x", "",
                                                           "description: y"]
    assert text.item_texts(ds, "kv:title,description", field_sep=" ")[0] == "title: Red Lipstick description: matte"
    with pytest.raises(ValueError, match="text columns"):
        text.item_texts(ds, "{genres}")
    assert text.DEFAULT_TEMPLATES["ml-1m"] == "{title} {genres}" and text.DEFAULT_TEMPLATES["yelp"] == "{categories}"
    assert text.DEFAULT_TEMPLATES["mind-sample"] == "{title} {category} {abstract}"


def test_truncation_keeps_the_head_and_never_returns_empty(tiny_dirs):
    bb = load_backbone(str(tiny_dirs["tiny-llama"]))
    long = " ".join(["lipstick"] * 50)
    ids = text.tokenize_texts(bb.tokenizer, [long, ""], 8)
    assert len(ids[0]) == 8 and ids[0] == bb.tokenizer(long)["input_ids"][:8]
    assert len(ids[1]) >= 1


def test_embedding_cache_is_keyed_and_reused(tiny_dirs, tmp_path):
    bb = load_backbone(str(tiny_dirs["tiny-bert"]))
    enc = ItemEncoder(bb.encoder_module(), bb.hidden_size, "mean", pad_id=bb.tokenizer.pad_token_id)
    kw = dict(fingerprint=bb.fingerprint, template="{title}", max_tokens=16, dataset="toy", cache_dir=tmp_path, progress=False)
    e1, i1 = cached_item_embeddings(enc, bb.tokenizer, TEXTS, **kw)
    e2, i2 = cached_item_embeddings(enc, bb.tokenizer, TEXTS, **kw)
    assert not i1["from_cache"] and i2["from_cache"] and i1["path"] == i2["path"]
    assert torch.equal(e1, e2) and e1.shape == (len(TEXTS), bb.hidden_size)
    files = list((tmp_path / "item_embeddings").glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("toy-")
    # any change of model, template, text or pooling -> a new entry
    _, i3 = cached_item_embeddings(enc, bb.tokenizer, TEXTS[:-1] + ["changed"], **kw)
    _, i4 = cached_item_embeddings(enc, bb.tokenizer, TEXTS, **{**kw, "template": "{title} {x}"})
    _, i5 = cached_item_embeddings(enc, bb.tokenizer, TEXTS, **{**kw, "fingerprint": "other"})
    assert not (i3["from_cache"] or i4["from_cache"] or i5["from_cache"])
    assert len({i1["path"], i3["path"], i4["path"], i5["path"]}) == 4
    e, meta = embeddings.load_embeddings(files[0])
    assert meta["template"] == "{title}" and meta["model"] == bb.fingerprint


def test_tokenizers_are_trained_in_process():
    tok = tiny.train_tokenizer(["alpha beta gamma", "beta gamma delta"], style="wordpiece", vocab_size=100)
    enc = tok("alpha delta")["input_ids"]
    assert enc[0] == tok.cls_token_id and enc[-1] == tok.sep_token_id and tok.unk_token_id not in enc
    bpe = tiny.train_tokenizer(["alpha beta gamma"] * 3, style="bpe", vocab_size=300)
    assert bpe("alpha")["input_ids"][0] == bpe.bos_token_id
    assert bpe.decode(bpe("alpha beta")["input_ids"], skip_special_tokens=True) == "alpha beta"


def test_kind_detection():
    from transformers import BartConfig, BertConfig, GPT2Config, LlamaConfig

    assert backbones.detect_kind(LlamaConfig()) == "causal"
    assert backbones.detect_kind(GPT2Config()) == "causal"
    assert backbones.detect_kind(BertConfig()) == "encoder"
    assert backbones.detect_kind(BertConfig(is_decoder=True)) == "causal"
    assert backbones.detect_kind(BartConfig()) == "seq2seq"
    assert np.all([backbones.describe(a)["type"] == "tiny" for a in tiny.TINY_ARCHS])
    assert backbones.describe("minilm")["type"] == "packaged"
