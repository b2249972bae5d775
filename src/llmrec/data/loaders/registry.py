"""The one registry of staged datasets: name -> where its files lie under the data root, and the loader that reads
them.

A loader registers itself with :func:`staged`, next to its own code::

    @staged("sports", "amazon-sports", "p5_llm-recsys-id/sequential_data.txt.gz")
    def load_sports(files: list[Path]) -> RawData: ...

The decorated name is then the public ``load_sports(root)``: it finds the files under ``root`` (the data root or
the dataset's own folder) and hands them to the function, in the order given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .raw import RawData


@dataclass(frozen=True)
class StagedDataset:
    """A staged dataset: its folder under the data root, the files read (the first locates the folder), the loader."""

    name: str
    folder: str
    files: tuple[str, ...]
    read: Callable[[list[Path]], RawData]

    def paths(self, root: str | Path) -> list[Path]:
        """The files under ``root``, which may be the data root (holding ``folder``) or the dataset folder itself."""
        root = Path(root)
        probe = self.files[0]
        if (root / self.folder / probe).exists():
            d = root / self.folder
        elif (root / probe).exists():
            d = root
        else:
            d = root / self.folder  # the missing-file error will name the expected path
        return [d / f for f in self.files]

    def __call__(self, root: str | Path) -> RawData:
        return self.read(self.paths(root))


# name -> StagedDataset, in registration order (the order `llmrec data list` shows)
DATASETS: dict[str, StagedDataset] = {}


def staged(name: str, folder: str, *files: str) -> Callable[[Callable[[list[Path]], RawData]], StagedDataset]:
    """Register ``fn(files) -> RawData`` as the staged dataset ``name``; the name it is bound to loads from a root."""

    def register(fn: Callable[[list[Path]], RawData]) -> StagedDataset:
        if name in DATASETS:
            raise ValueError(f"staged dataset {name!r} is registered twice")
        entry = StagedDataset(name, folder, tuple(files), fn)
        DATASETS[name] = entry
        return entry

    return register


def resolve_data_root(path: str | Path | None = None) -> Path:
    """Find the directory holding the staged datasets.

    Order: explicit ``path``; env var ``LLMREC_DATA``; ``../shared/datasets``
    relative to the current working directory; ``<repo>/../shared/datasets``
    found by walking up from this file.  Raises :class:`DataError` if none exists.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise DataError(p, "data root not found; expected a directory holding the datasets")
        return p.resolve()
    env = os.environ.get("LLMREC_DATA")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DataError(
                p, "data root from environment variable LLMREC_DATA does not exist; expected a directory"
            )
        return p.resolve()
    tried: list[Path] = []
    cand = Path.cwd() / ".." / "shared" / "datasets"
    tried.append(cand)
    if cand.is_dir():
        return cand.resolve()
    for parent in Path(__file__).resolve().parents:
        cand = parent / "shared" / "datasets"
        tried.append(cand)
        if cand.is_dir():
            return cand.resolve()
    raise DataError(
        None,
        "no dataset root found: pass root=..., or set LLMREC_DATA=/path/to/datasets "
        f"(looked for: {', '.join(str(t) for t in tried[:3])}, ...)",
    )


def _known(name: str) -> StagedDataset:
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DataError(
            None,
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}. "
            "For your own files use the generic loader: `data: {name: generic, generic: {interactions: FILE, user_col: ..., item_col: ..., time_col: ...}}`",
        )
    return DATASETS[key]


def source_files(name: str, root: str | Path | None = None) -> list[str]:
    """Absolute paths of the files ``load_raw(name, root)`` reads, without parsing them.

    Same list (and order) as ``RawData.source_files``; meant for cache look-ups.
    Files need not exist (a missing file is reported by the loader itself).
    """
    return [str(p.resolve()) for p in _known(name).paths(resolve_data_root(root))]


def load_raw(name: str, root: str | Path | None = None) -> RawData:
    """Load a staged dataset by name (see ``DATASETS``) from the data root.

    ``root`` may be the data root (holding the dataset folders) or the dataset's own folder.
    """
    return _known(name)(resolve_data_root(root))
