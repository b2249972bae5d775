"""The first stage of two-stage LLM recommenders (PALR, LLM-TRSR, GenRec re-rankers): any trained llmrec model.

A retriever is given as

- a **run directory** (``llmrec run ... --out DIR``: ``DIR/model/config.json``) or a **model directory**
  (``config.json`` + ``model.safetensors``); it is loaded with :meth:`Recommender.load` and its recorded data
  fingerprint must equal the current one (:class:`~llmrec.data.fingerprint.FingerprintMismatch` otherwise:
  a retriever trained on other data or other item ids would silently return the wrong items); or
- a **config** (a YAML run config path or an inline dict with ``model``, ``params``, ``train``): the model is
  trained here on the caller's own split (training split only; validation for early stopping), so it is built
  on the same data by construction. A ``data`` section in it must name the same preparation as ours.

:func:`retrieve` returns each row's top-N items over the full catalogue with the history masked, plus the full
score matrix (for the retriever's own metrics on the same users).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from llmrec.data.fingerprint import FingerprintMismatch, check_same_data


class RetrieverError(ValueError):
    pass


def model_dir_of(path: str | Path) -> Path | None:
    """The model directory inside a run directory, the directory itself if it is a model directory, else None."""
    p = Path(path)
    if (p / "model" / "config.json").exists():
        return p / "model"
    if (p / "config.json").exists() and (p / "model.safetensors").exists():
        return p
    return None


def load_retriever(path: str | Path, expected_fingerprint: dict | None, what: str = "retriever"):
    """Load a saved retriever and check that it was built on the same data and item ids."""
    from llmrec.models.base import Recommender

    d = model_dir_of(path)
    if d is None:
        raise RetrieverError(f"{what} {path}: not a run directory (DIR/model/config.json) or a model directory")
    model = Recommender.load(d)
    if expected_fingerprint is not None:
        try:
            check_same_data(expected_fingerprint, model.data_fingerprint, f"{what} {path}")
        except FingerprintMismatch as e:
            raise FingerprintMismatch(f"{e}; retrain it on this data (or point {what} at a matching run)") from None
    return model


def _fingerprint_fields_of(data: dict) -> dict:
    keys = ("dedup", "behaviors", "min_user_interactions", "min_item_interactions", "id_order", "id_seed")
    from llmrec.data.dataset import DataConfig

    d = DataConfig(**data).model_dump()
    return {"dataset": d["name"], **{k: d[k] for k in keys}}


def train_retriever(config: str | Path | dict, split, data_fingerprint: dict | None, out_dir: str | Path, *,
                    run_cfg=None, progress: bool = True):
    """Train the retriever described by ``config`` on ``split`` and save it to ``out_dir`` (a model directory)."""
    import yaml

    from llmrec.config import RunConfig
    from llmrec.models import build_model

    if isinstance(config, (str, Path)):
        p = Path(config)
        if not p.exists():
            raise RetrieverError(f"retriever config not found: {p}")
        d = yaml.safe_load(p.read_text()) or {}
        src = str(p)
    else:
        d, src = dict(config), "inline retriever config"
    if "model" not in d:
        raise RetrieverError(f"{src}: a retriever config needs a 'model' key")
    if d.get("data") is not None and data_fingerprint is not None:
        data = d["data"] if isinstance(d["data"], dict) else {"name": d["data"]}
        mine = {k: data_fingerprint.get(k) for k in ("dataset", "dedup", "behaviors", "min_user_interactions",
                                                     "min_item_interactions", "id_order", "id_seed")}
        theirs = _fingerprint_fields_of(data)
        diff = [f"{k}: {theirs[k]!r} (expected {mine[k]!r})" for k in mine if theirs.get(k) != mine[k]]
        if diff:
            raise FingerprintMismatch(f"retriever config {src} prepares other data: {'; '.join(diff)}")
    base = run_cfg.model_dump() if run_cfg is not None else {"data": {"name": split.dataset.name}}
    rc = {"data": base["data"], "split": base.get("split", {}), "model": d["model"], "params": d.get("params", {}),
          "train": d.get("train", {}), "seed": d.get("seed", base.get("seed", 42)),
          "eval": {**base.get("eval", {}), **{k: v for k, v in (d.get("eval") or {}).items() if k in ("mask_history",)}}}
    try:
        cfg = RunConfig(**rc).resolved()
    except Exception as e:  # noqa: BLE001 - one clear line naming the source
        raise RetrieverError(f"{src}: {e}") from None
    model = build_model(cfg.model, cfg.params)
    model.data_fingerprint = data_fingerprint
    out = Path(out_dir)
    t = time.perf_counter()
    model.fit(split, cfg=cfg, run_dir=out.parent / (out.name + "-run"), progress=progress)
    model.save(out)
    model.fit_info = {**getattr(model, "fit_info", {}), "retriever_train_seconds": time.perf_counter() - t}
    return model


def check_retriever_source(path: str | None, config: str | dict | None) -> None:
    """Raise when there is nothing to load (``path`` holds no saved model) and nothing to train from (no config):
    cheap, so a model can call it before any expensive stage."""
    if config is None and (not path or model_dir_of(path) is None):
        raise RetrieverError(f"params.retriever {path!r} holds no saved model (DIR/model/config.json) and "
                             "params.retriever_config is null: nothing to load or train the retriever from")


def resolve_retriever(path: str | None, config: str | dict | None, split, data_fingerprint: dict | None,
                      out_dir: str | Path | None, *, run_cfg=None, progress: bool = True) -> tuple[object, dict]:
    """Load ``path`` when it holds a saved model, else train from ``config``; returns (model, info)."""
    t = time.perf_counter()
    if path and model_dir_of(path) is not None:
        m = load_retriever(path, data_fingerprint)
        return m, {"source": "loaded", "path": str(path), "model": m.name, "seconds": time.perf_counter() - t}
    check_retriever_source(path, config)
    if out_dir is None:
        import tempfile

        out_dir = Path(tempfile.mkdtemp(prefix="llmrec-retriever-")) / "retriever"
    m = train_retriever(config, split, data_fingerprint, out_dir, run_cfg=run_cfg, progress=progress)
    return m, {"source": "trained", "config": config if isinstance(config, (str, dict)) else str(config),
               "missing_path": path, "model": m.name, "seconds": time.perf_counter() - t}


@torch.no_grad()
def retrieve(model, batch, n: int, mask_history: bool = True) -> tuple[np.ndarray, torch.Tensor]:
    """(B, n) top-n item indices per row (best first; history masked) and the (B, n_items) raw scores."""
    scores = model.score(batch).float()
    ranked = scores.masked_fill(batch.history_mask(scores.shape[1]), float("-inf")) if mask_history else scores
    top = torch.topk(ranked, min(n, ranked.shape[1]), dim=1).indices
    return top.numpy(), scores
