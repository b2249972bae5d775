"""The interface every llmrec model keeps, so that the evaluator, the CLI and the service never special-case one.

A model is configured by a small pydantic ``Params`` class (validated; unknown keys are errors), then:

- ``fit(split)``            learn from ``split.train`` (and ``split.valid`` for early stopping);
- ``score(batch)``          (B, n_items) float scores for a :class:`HistoryBatch`; higher is better;
- ``score_candidates``      (B, C) scores for given candidate sets (default: gather from ``score``);
- ``recommend(batch, k)``   top-k item indices, history masked by default;
- ``save(dir)`` / ``load(dir)``  ``config.json`` + ``model.safetensors`` — never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file

from llmrec.utils.padding import pad_rows


class UnsupportedOperation(ValueError):
    """A model cannot do what was asked (e.g. LLM-TRSR scoring the whole catalogue); the message says what it can do."""


class Params(BaseModel):
    """Base of every model's hyper-parameters."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class HistoryBatch:
    """A batch of users with their chronological item histories."""

    users: np.ndarray  # (B,) user index (-1 for an unknown user)
    histories: list[np.ndarray]
    # optional (session protocol): per row, the history cut into sessions; their concatenation equals the
    # history and the last one is the current session's prefix (empty when its first item is predicted)
    sessions: list[list[np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.histories)

    def padded(self, max_len: int | None = None, pad: int = 0, shift: int = 0, left: bool = True) -> torch.Tensor:
        """(B, L) long tensor of the last ``max_len`` items (+``shift``), padded with ``pad``.

        ``left=True`` right-aligns the sequences (padding on the left), as SASRec-style models expect."""
        lens = [len(h) if max_len is None else min(len(h), max_len) for h in self.histories]
        L = max(1, max(lens) if lens else 1)
        return torch.from_numpy(pad_rows(self.histories, L, pad=pad, shift=shift, align="right" if left else "left")[0])

    def lengths(self, max_len: int | None = None) -> torch.Tensor:
        return torch.tensor([len(h) if max_len is None else min(len(h), max_len) for h in self.histories])

    def history_mask(self, n_items: int) -> torch.Tensor:
        """(B, n_items) bool: True where the item is in the row's history."""
        rows = np.repeat(np.arange(len(self.histories)), [len(h) for h in self.histories])
        cols = np.concatenate(self.histories) if self.histories else np.zeros(0, dtype=np.int64)
        m = torch.zeros((len(self.histories), n_items), dtype=torch.bool)
        if len(cols):
            m[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = True
        return m


class Recommender:
    """Base class. Subclasses set ``name``, ``Params`` and implement ``fit`` and ``score``."""

    name: ClassVar[str] = "base"
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | dict | None = None, **kw):
        if params is None or isinstance(params, dict):
            params = self.Params(**{**(params or {}), **kw})
        self.params = params
        self.n_items: int = 0
        self.n_users: int = 0
        # what the model was trained on (llmrec.data.fingerprint; set by the run pipeline, saved with the model)
        self.data_fingerprint: dict | None = None

    # -- learning and scoring -------------------------------------------------------------------
    def fit(self, split, **kw) -> "Recommender":
        raise NotImplementedError

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        raise NotImplementedError

    def score_candidates(self, batch: HistoryBatch, candidates: torch.Tensor) -> torch.Tensor:
        return torch.gather(self.score(batch), 1, candidates)

    @torch.no_grad()
    def recommend(self, batch: HistoryBatch, k: int = 10, mask_history: bool = True):
        scores = self.score(batch).float()
        if mask_history:
            scores = scores.masked_fill(batch.history_mask(self.n_items), float("-inf"))
        vals, idx = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        return idx, vals

    # -- persistence ------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to score, as tensors (saved with safetensors)."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def extra_config(self) -> dict:
        return {}

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = {
            "model": self.name,
            "params": self.params.model_dump(),
            "n_items": self.n_items,
            "n_users": self.n_users,
            "extra": self.extra_config(),
            "data_fingerprint": self.data_fingerprint,
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_tensors().items()}
        tmp = d / "model.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(d / "model.safetensors")
        (d / "config.json.tmp").write_text(json.dumps(cfg, indent=2))
        (d / "config.json.tmp").replace(d / "config.json")

    @classmethod
    def load(cls, directory: str | Path) -> "Recommender":
        from llmrec.models import get_model_class

        d = Path(directory)
        cfg = json.loads((d / "config.json").read_text())
        klass = get_model_class(cfg["model"]) if cls is Recommender else cls
        m = klass(cfg["params"])
        m.n_items, m.n_users = cfg["n_items"], cfg["n_users"]
        m.data_fingerprint = cfg.get("data_fingerprint")
        m.load_extra_config(cfg.get("extra", {}))
        m.load_state_tensors(load_file(str(d / "model.safetensors")))
        return m

    def load_extra_config(self, extra: dict) -> None:
        pass

    # -- optional evaluation hooks (models that return ranked lists: PALR, GenRec) --------------------
    # ``begin_eval(name)`` is called before the evaluator's first batch of an evaluation set and
    # ``end_eval()`` after its last; ``end_eval`` returns a JSON-able report (e.g. invalid / duplicate rates)
    # that the run writes into metrics.json under ``generation.<name>``; a ``predictions`` key in it (a list
    # of row dicts) is written to ``predictions.parquet`` for the test set instead.
    def begin_eval(self, name: str) -> None:
        pass

    def end_eval(self) -> dict:
        return {}
