"""Training shared by every neural model: :class:`TorchRecommender` (the model contract, ``base``), the loop
(``trainer``), atomic safetensors checkpoints (``checkpoint``) and tensor batch helpers (``data``).
See docs/training.md."""

from llmrec.training.base import TorchRecommender

__all__ = ["TorchRecommender"]
