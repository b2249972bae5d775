"""Model registry: name -> class, imported lazily so that a model's dependencies load only when used."""

from __future__ import annotations

import importlib

from llmrec.models.base import HistoryBatch, Params, Recommender

# name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "pop": "llmrec.models.pop:Pop",
    "itemknn": "llmrec.models.itemknn:ItemKNN",
    "nextid": "llmrec.models.nextid:NextId",
    "bpr": "llmrec.models.bpr:BPRMF",
    "ncf": "llmrec.models.ncf:NeuMF",
    "gru4rec": "llmrec.models.gru4rec:GRU4Rec",
    "caser": "llmrec.models.caser:Caser",
    "sasrec": "llmrec.models.sasrec:SASRec",
    "bert4rec": "llmrec.models.bert4rec:BERT4Rec",
    "hnvm": "llmrec.models.hnvm:HNVM",
    "hrnn": "llmrec.models.hrnn:HRNN",
    "hllm": "llmrec.models.hllm:HLLM",
    "llm_trsr": "llmrec.models.llm_trsr:LLMTRSR",
    "palr": "llmrec.models.palr:PALR",
    "genrec": "llmrec.models.genrec:GenRec",
}


def register(name: str, target: str) -> None:
    _REGISTRY[name] = target


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    key = name.lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    mod, cls = _REGISTRY[key].split(":")
    return getattr(importlib.import_module(mod), cls)


def build_model(name: str, params: dict | None = None) -> Recommender:
    return get_model_class(name)(params or {})


__all__ = ["HistoryBatch", "Params", "Recommender", "available_models", "build_model", "get_model_class", "register"]
