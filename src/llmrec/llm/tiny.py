"""Tiny, randomly initialised language models built in-process, for tests and CPU-sized experiments.

``tiny-llama`` (causal), ``tiny-bert`` (encoder), ``tiny-bart`` (seq2seq) and ``tiny-gpt2`` (causal,
absolute positions) are real Hugging Face architectures with a few layers, each with a tokenizer **trained
in-process** on the given texts (typically the dataset's item texts) with the ``tokenizers`` library and
wrapped as a :class:`~transformers.PreTrainedTokenizerFast`.

:func:`build_tiny` *saves* the model and tokenizer to a directory with ``save_pretrained``; they are then
loaded back by :func:`llmrec.llm.backbones.load_backbone` through exactly the ``from_pretrained`` path a
real model directory (a 7B Llama on a GPU box) takes. :func:`tiny_dir` keeps built models in the cache,
keyed by the architecture, its settings, the seed and a hash of the training texts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llmrec.utils.io import atomic_write_dir

TINY_VERSION = 2
TINY_ARCHS = ("tiny-llama", "tiny-bert", "tiny-bart", "tiny-gpt2")

# Small default architecture settings (overridable with ``overrides``; HF config names).
_DEFAULTS: dict[str, dict] = {
    "tiny-llama": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                       intermediate_size=128, max_position_embeddings=512),
    "tiny-bert": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                      max_position_embeddings=512),
    "tiny-bart": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=512),
    "tiny-gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=512),
}

_FALLBACK_CORPUS = [
    "a small corpus for a tiny language model",
    "the quick brown fox jumps over the lazy dog",
    "items users clicked bought watched and rated",
    "recommend the next item from the history of a user",
    "lipstick mascara shampoo nail polish perfume brush",
    "comedy drama action thriller romance animation",
]


def is_tiny(spec: str) -> bool:
    return spec.strip().lower() in TINY_ARCHS


def texts_hash(texts: list[str] | None) -> str:
    h = hashlib.sha256()
    for t in texts or _FALLBACK_CORPUS:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# tokenizers


def train_tokenizer(texts: list[str] | None, style: str = "bpe", vocab_size: int = 1000, bos_eos: str = "bos"):
    """A PreTrainedTokenizerFast trained on ``texts``.

    ``style="bpe"``: byte-level BPE with ``<s> </s> <unk> <pad>`` (Llama/GPT-2-like), ``bos_eos`` = "bos"
    (``<s> text``, like Llama), "both" (``<s> text </s>``, like BART) or "none" (GPT-2);
    ``style="wordpiece"``: lower-cased WordPiece with ``[CLS] text [SEP]`` (BERT-like)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [t for t in (texts or []) if t and t.strip()] or list(_FALLBACK_CORPUS)
    if style == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        # The tokenizers WordPieceTrainer is not deterministic (hash-map order), so the vocabulary is built here:
        # specials, every character (word-initial and ##continuation), then whole words by frequency.
        norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
        counts: dict[str, int] = {}
        for t in corpus:
            for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)):
                counts[w] = counts.get(w, 0) + 1
        chars = sorted({c for w in counts for c in w})
        vocab_list = list(specials) + chars + ["##" + c for c in chars]
        seen = set(vocab_list)
        for w in sorted(counts, key=lambda w: (-counts[w], w)):
            if len(vocab_list) >= max(vocab_size, len(specials)):
                break
            if w not in seen:
                seen.add(w)
                vocab_list.append(w)
        tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab_list)}, unk_token="[UNK]"))
        tok.normalizer = norm
        tok.pre_tokenizer = pre
        tok.decoder = decoders.WordPiece()
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
            mask_token="[MASK]", model_max_length=512,
        )
    if style != "bpe":
        raise ValueError(f"unknown tokenizer style {style!r} (bpe | wordpiece)")
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                            show_progress=False),
    )
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    if bos_eos == "bos":
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    elif bos_eos == "both":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=512,
    )


# ----------------------------------------------------------------------------------------------------
# models


def _config(arch: str, vocab: int, tok, overrides: dict):
    from transformers import BartConfig, BertConfig, GPT2Config, LlamaConfig

    kw = {**_DEFAULTS[arch], **(overrides or {})}
    if arch == "tiny-llama":
        if "num_key_value_heads" not in (overrides or {}) and "num_attention_heads" in (overrides or {}):
            kw["num_key_value_heads"] = kw["num_attention_heads"]
        return LlamaConfig(vocab_size=vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id, tie_word_embeddings=True, **kw)
    if arch == "tiny-gpt2":
        return GPT2Config(vocab_size=vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id, **kw)
    if arch == "tiny-bert":
        return BertConfig(vocab_size=vocab, pad_token_id=tok.pad_token_id, **kw)
    if arch == "tiny-bart":
        return BartConfig(vocab_size=vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id, decoder_start_token_id=tok.eos_token_id,
                          forced_eos_token_id=tok.eos_token_id, **kw)
    raise ValueError(f"unknown tiny architecture {arch!r}; known: {', '.join(TINY_ARCHS)}")


def build_tiny(arch: str, out_dir: str | Path, texts: list[str] | None = None, *, vocab_size: int = 1000,
               overrides: dict | None = None, seed: int = 0) -> Path:
    """Build a tiny random ``arch`` model + tokenizer trained on ``texts`` and ``save_pretrained`` both to ``out_dir``."""
    import torch
    from transformers import BartForConditionalGeneration, BertModel, GPT2LMHeadModel, LlamaForCausalLM

    arch = arch.strip().lower()
    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; known: {', '.join(TINY_ARCHS)}")
    style = "wordpiece" if arch == "tiny-bert" else "bpe"
    bos_eos = {"tiny-llama": "bos", "tiny-bart": "both", "tiny-gpt2": "none"}.get(arch, "bos")
    tok = train_tokenizer(texts, style=style, vocab_size=vocab_size, bos_eos=bos_eos)
    cfg = _config(arch, len(tok), tok, overrides or {})
    klass = {"tiny-llama": LlamaForCausalLM, "tiny-bert": BertModel, "tiny-bart": BartForConditionalGeneration,
             "tiny-gpt2": GPT2LMHeadModel}[arch]
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = klass(cfg).eval()
    finally:
        torch.random.set_rng_state(state)
    from llmrec.llm.backbones import quiet_transformers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
    (out / "LLMREC_TINY.json").write_text(json.dumps({"arch": arch, "seed": seed, "vocab_size": vocab_size,
                                                      "overrides": overrides or {}, "texts": texts_hash(texts)}))
    return out


def tiny_dir(arch: str, texts: list[str] | None = None, *, vocab_size: int = 1000, overrides: dict | None = None,
             seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """A cached directory holding ``build_tiny(arch, ...)`` (built on first use, atomically)."""
    from llmrec.utils.runtime import default_cache_dir

    arch = arch.strip().lower()
    key = hashlib.sha256(json.dumps([TINY_VERSION, arch, vocab_size, overrides or {}, seed, texts_hash(texts)],
                                    sort_keys=True, default=str).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    target = root / "tiny" / f"{arch}-{key}"
    if (target / "config.json").exists():
        return target
    return atomic_write_dir(
        target, lambda tmp: build_tiny(arch, tmp, texts, vocab_size=vocab_size, overrides=overrides, seed=seed),
        keep_existing=lambda t: (t / "config.json").exists(),
    )
