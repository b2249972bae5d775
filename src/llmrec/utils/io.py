"""Small I/O helpers: atomic writes and run provenance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_dir(target: str | Path, writer, *, keep_existing=None, mode: int = 0o755) -> Path:
    """Write a directory atomically: ``writer(tmpdir)`` fills a temp dir beside ``target`` that then replaces it.

    ``keep_existing(target) -> bool``, checked after writing: a complete ``target`` written meanwhile by another
    process is kept and the temp dir dropped (a race between two processes filling the same cache entry).
    An exception in ``writer`` leaves ``target`` untouched and removes the temp dir."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, mode)  # mkdtemp makes 0700
    try:
        writer(tmp)
        if keep_existing is not None and keep_existing(target):
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (checksums of cache entries and checkpoints)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def warn(msg: str) -> None:
    """One plain-text ``warning:`` line on stderr (never rich markup)."""
    import sys

    sys.stderr.write(f"warning: {msg}\n")
    sys.stderr.flush()


def git_commit() -> str | None:
    """The commit of the llmrec checkout in use, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
