"""LoRA adapters through peft, as a config switch.

``LoraSettings`` is a small pydantic block a model's ``Params`` can embed (``lora: {r: 8, alpha: 16}``);
:func:`apply_lora` wraps any transformers model (base or with head) and freezes everything but the adapters.
``target_modules: auto`` picks the attention projections by architecture (Llama/Mistral/Qwen ``q,k,v,o_proj``;
BERT ``query,key,value``; GPT-2 ``c_attn``; BART/T5 their q/k/v/o) and falls back to every ``nn.Linear``
except the heads. Only adapter weights are saved by :func:`lora_state_dict` (safetensors, never pickle).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "baichuan": ["W_pack", "o_proj"],
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "gpt2": ["c_attn"],
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "t5": ["q", "k", "v", "o"],
}


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = "auto"
    bias: str = "none"


def target_modules_for(model: nn.Module) -> list[str]:
    mt = getattr(getattr(model, "config", None), "model_type", "")
    if mt in _TARGETS:
        return list(_TARGETS[mt])
    names = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and not any(h in name for h in ("lm_head", "classifier", "score", "pooler")):
            names.add(name.split(".")[-1])
    if not names:
        raise ValueError(f"no Linear layers to put LoRA adapters on in a {mt or type(model).__name__} model")
    return sorted(names)


def apply_lora(model: nn.Module, settings: LoraSettings | dict):
    """Wrap ``model`` with LoRA adapters (peft); only the adapters stay trainable."""
    from peft import LoraConfig, get_peft_model

    s = settings if isinstance(settings, LoraSettings) else LoraSettings(**settings)
    targets = target_modules_for(model) if s.target_modules == "auto" else s.target_modules
    cfg = LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=targets, bias=s.bias)
    return get_peft_model(model, cfg)


def lora_state_dict(model: nn.Module) -> dict:
    """Only the adapter tensors of a peft-wrapped model."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def load_lora_state_dict(model: nn.Module, tensors: dict) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, tensors)


def is_peft(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    tr = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return tr, sum(p.numel() for p in model.parameters())
