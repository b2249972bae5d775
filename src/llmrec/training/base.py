"""``TorchRecommender``: the base of every neural model. A new model is one file that implements four methods.

The contract (see also docs/training.md)::

    class MyModel(TorchRecommender):
        name = "mymodel"                      # the registry name (src/llmrec/models/__init__.py)
        Params = MyParams                     # pydantic hyper-parameters, paper defaults

        def build(self, split) -> nn.Module   # create the network from self.n_items / self.n_users
                                              # (split is None when the model is loaded from disk)
        def train_batches(self, split, generator, batch_size)
                                              # -> iterable of dicts of tensors: ONE epoch, built with
                                              #    tensor ops, all randomness from ``generator``
        def loss(self, batch) -> Tensor       # scalar training loss of one batch (already on self.device)
        def score(self, batch: HistoryBatch) -> Tensor
                                              # (B, n_items) scores; runs under torch.no_grad() in eval
                                              #    mode automatically; move inputs to self.device

Everything else is shared: ``fit()`` runs :class:`llmrec.training.trainer.Trainer` (AdamW, gradient clipping,
validation every epoch, early stopping on valid NDCG@10, atomic checkpoints and resume, accelerate for
multi-GPU / multi-node and mixed precision); ``state_tensors()`` / ``load_state_tensors()`` persist
``self.net.state_dict()`` (so ``save`` / ``load`` work unchanged); ``fit_info`` records the training run.

Rules that keep runs reproducible and resumable: draw every random number of ``train_batches`` from the
``generator`` argument (a ``torch.Generator``; the trainer checkpoints its state), use the global torch RNG
only inside the network (dropout), register data-derived tensors the scorer needs as buffers of ``self.net``
(they are saved with it) and anything else JSON-able through ``extra_config`` / ``load_extra_config``.
Data-parallel training (torchrun / accelerate launch): ``train.batch_size`` is the global batch and each process
builds its share of every batch's rows; a model whose loss is a mean over a varying number of terms (positions
with a target) defines ``loss_weight(batch) -> int`` (that number) so the processes' losses are weighted into
the mean of the whole batch (rows are counted otherwise). Models whose state is large (a frozen LLM backbone) may override ``state_tensors`` /
``load_state_tensors`` to save only what is trained, and ``trainable_parameters`` to choose what AdamW sees.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from llmrec.models.base import HistoryBatch, Recommender


def _inference(score_fn):
    """Wrap a subclass's ``score``: no_grad, eval mode (restored afterwards), float32 CPU output."""

    @functools.wraps(score_fn)
    def score(self, batch: HistoryBatch, *args, **kw) -> torch.Tensor:
        if self.net is None:
            raise RuntimeError(f"model {self.name!r} has no network yet: call fit() or load() first")
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                out = score_fn(self, batch, *args, **kw)
        finally:
            if was_training:
                self.net.train()
        return out.float().cpu()

    score._llmrec_inference = True
    return score


class TorchRecommender(Recommender):
    """A recommender whose state is ``self.net`` (an ``nn.Module``), trained by the shared Trainer."""

    requires_sessions = False  # True: fit() refuses a split without sessions (split.protocol: session)
    epoch_trainer = True  # False: fit() runs its own loop (train.ema, an option of the shared Trainer, is refused)

    def __init__(self, params=None, **kw):
        super().__init__(params, **kw)
        self.net: nn.Module | None = None
        self.fit_info: dict = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        s = cls.__dict__.get("score")
        if s is not None and not getattr(s, "_llmrec_inference", False):
            cls.score = _inference(s)

    # -- the four methods a model implements ---------------------------------------------------
    def build(self, split) -> nn.Module:
        raise NotImplementedError

    def train_batches(self, split, generator: torch.Generator, batch_size: int) -> Iterable[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def score(self, batch: HistoryBatch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.net.parameters():
            return p.device
        for b in self.net.buffers():
            return b.device
        return torch.device("cpu")

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def fit(self, split, cfg=None, run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
            callbacks=None, accelerator=None, **overrides) -> "TorchRecommender":
        """Train on ``split.train``, validate on ``split.valid``; leaves the model holding the best weights.

        ``cfg`` is a RunConfig (its ``train``, ``eval.mask_history``, ``seed`` are used), a TrainConfig, or
        None (TrainConfig defaults); keyword ``overrides`` replace TrainConfig fields (``fit(split, epochs=3)``).
        ``run_dir`` enables per-epoch checkpoints in ``run_dir/checkpoints`` and ``resume=True`` continues from
        them. ``callbacks``: functions ``f(model, epoch, info)`` called after every epoch's checkpoint."""
        from llmrec.training.trainer import Trainer

        if self.requires_sessions and split.train_sessions is None:
            raise ValueError(f"{self.name} needs the session protocol (split.protocol: session)")
        Trainer.from_config(self, split, cfg, run_dir=run_dir, resume=resume, progress=progress,
                            callbacks=callbacks, accelerator=accelerator, **overrides).fit()
        return self

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.net is None:
            return {}
        out: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for k, v in self.net.state_dict().items():
            v = v.detach()
            ptr = v.data_ptr()
            # safetensors refuses tensors sharing memory (tied weights): store a copy of the second one
            out[k] = v.clone() if ptr in seen and v.numel() else v
            seen.add(ptr)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.net is None:
            self.net = self.build(None)
        dev = self.device
        self.net.load_state_dict({k: v.to(dev) for k, v in tensors.items()})
