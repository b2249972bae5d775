"""What the process environment decides, in one place: the cache folder (``LLMREC_CACHE``), whether progress is
shown (``LLMREC_PROGRESS=0`` silences it), and seeding of the python / numpy / torch global RNGs."""

from __future__ import annotations

import os
import random
from pathlib import Path


def default_cache_dir() -> Path:
    """``$LLMREC_CACHE``, else ``~/.cache/llmrec`` (datasets, item embeddings, converted models)."""
    env = os.environ.get("LLMREC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "llmrec"


def progress_enabled(progress: bool = True) -> bool:
    """Show progress: asked for and not silenced by ``LLMREC_PROGRESS=0``."""
    return bool(progress) and os.environ.get("LLMREC_PROGRESS", "1") != "0"


def seed_all(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def note(tag: str, msg: str, progress: bool = True) -> None:
    """One ``[tag] msg`` line on stderr, unless progress is off."""
    if progress_enabled(progress):
        import sys

        print(f"[{tag}] {msg}", file=sys.stderr, flush=True)
