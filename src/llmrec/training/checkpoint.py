"""Training checkpoints: model + optimizer + RNG states + loop counters, atomically, without pickle.

Layout under ``DIR/checkpoints/``::

    epoch-0007/                 one directory per kept epoch (the last one, and the best one)
        model.safetensors       the model's state tensors (``Recommender.state_tensors()``)
        optimizer.safetensors   every tensor of ``optimizer.state_dict()["state"]``, keyed ``<param>.<name>``
        rng.safetensors         torch CPU (and CUDA) RNG states and the data-order generator (uint8 tensors)
        state.json              epoch, best metric, early-stopping counters, history, optimizer structure
                                (param groups, non-tensor state), numpy / python RNG states, scaler state
    latest.json                 {"last": "epoch-0007", "best": "epoch-0005"} -- the commit point

state.json carries the sha256 of each .safetensors file (``checksums``). Loading verifies them: a damaged
``last`` checkpoint (or a damaged ``latest.json``) falls back, with a warning, to the newest intact one (the best
epoch, whose state and RNG let the run replay the later epochs exactly); with none intact, a
:class:`CheckpointError` names the damaged file.

Writing is atomic at two levels: an epoch directory is written under a temporary name and renamed into
place, and only then is ``latest.json`` replaced (``os.replace``). A crash at any moment leaves the previous
``latest.json`` pointing at complete directories. Directories other than the last and the best are removed
after the pointer has moved.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llmrec.data.errors import DataError
from llmrec.utils.io import atomic_write_json, sha256_file
from llmrec.utils.io import warn as _warn

POINTER = "latest.json"
_TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")


class CheckpointError(DataError):
    """A damaged checkpoint or pointer file, or a resume the saved checkpoint refuses; names the file."""


# -- RNG states ----------------------------------------------------------------------------------
def rng_state(generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, json) capturing torch / CUDA / numpy / python global RNGs and the data-order ``generator``."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    if generator is not None:
        tensors["data_generator"] = generator.get_state()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    meta = {
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict, generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = sorted(k for k in tensors if k.startswith("cuda."))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in sorted(cuda, key=lambda k: int(k.split(".")[1]))]
        torch.cuda.set_rng_state_all(states[: torch.cuda.device_count()])
    if generator is not None and "data_generator" in tensors:
        generator.set_state(tensors["data_generator"])
    n = meta["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# -- optimizer state -----------------------------------------------------------------------------
def _to_json(v: Any) -> Any:
    if isinstance(v, tuple):
        return {"__tuple__": [_to_json(x) for x in v]}
    if isinstance(v, list):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _to_json(x) for k, x in v.items()}
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v


def _from_json(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"__tuple__"}:
            return tuple(_from_json(x) for x in v["__tuple__"])
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (``"<param>.<name>"``) and a JSON structure."""
    tensors: dict[str, torch.Tensor] = {}
    other: dict[str, dict] = {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                other.setdefault(str(pid), {})[name] = _to_json(v)
    meta = {"param_groups": _to_json(sd["param_groups"]), "non_tensor_state": other, "param_ids": [str(p) for p in sd["state"]]}
    return tensors, meta


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, st in meta.get("non_tensor_state", {}).items():
        state.setdefault(int(pid), {}).update(_from_json(st))
    return {"state": state, "param_groups": _from_json(meta["param_groups"])}


# -- save / load ---------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    ckpt_dir: str | Path,
    epoch: int,
    model_tensors: dict[str, torch.Tensor],
    optimizer_state: dict,
    generator: torch.Generator | None,
    state: dict,
    *,
    is_best: bool,
    scaler_state: dict | None = None,
    best_epoch: int | None = None,
) -> Path:
    """Write ``epoch-XXXX/`` atomically, move ``latest.json`` to it, and prune all but the last and the best."""
    root = Path(ckpt_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_tensors.items()}, str(tmp / "model.safetensors"))
        opt_tensors, opt_meta = flatten_optimizer(optimizer_state)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng_tensors, rng_meta = rng_state(generator)
        save_file({k: v.cpu().contiguous() for k, v in rng_tensors.items()}, str(tmp / "rng.safetensors"))
        payload = {**state, "epoch": epoch, "optimizer": opt_meta, "rng": rng_meta, "scaler": scaler_state,
                   "checksums": {f: sha256_file(tmp / f) for f in _TENSOR_FILES}}
        (tmp / "state.json").write_text(json.dumps(_to_json(payload), indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = root / name
        if final.exists():  # a re-run of this epoch (resumed after a crash between rename and pointer)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        prev = read_pointer(root) or {}
    except CheckpointError:  # a damaged pointer: the best epoch comes from the state (best_epoch) instead
        prev = {}
    if best_epoch is not None and best_epoch > 0 and not is_best and (root / f"epoch-{best_epoch:04d}").is_dir():
        prev = {**prev, "best": f"epoch-{best_epoch:04d}"}
    best = name if is_best or not prev.get("best") else prev["best"]
    atomic_write_json(root / POINTER, {"last": name, "best": best})
    for d in root.iterdir():
        if d.is_dir() and d.name not in (name, best):
            shutil.rmtree(d, ignore_errors=True)
    return final


def read_pointer(ckpt_dir: str | Path) -> dict | None:
    """``{"last": ..., "best": ...}`` or None when there is no pointer; a damaged pointer raises CheckpointError."""
    p = Path(ckpt_dir) / POINTER
    if not p.exists():
        return None
    try:
        ptr = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(p, f"checkpoint pointer is damaged ({type(e).__name__}: {e})") from None
    if not isinstance(ptr, dict) or not all(isinstance(ptr.get(k), (str, type(None))) for k in ("last", "best")):
        raise CheckpointError(p, f"checkpoint pointer is damaged: expected {{'last': ..., 'best': ...}}, got {str(ptr)[:80]!r}")
    return ptr


def _read_dir(d: Path, tensors: tuple[str, ...] = _TENSOR_FILES) -> dict:
    """Verify and read one checkpoint directory; raises CheckpointError naming the damaged file."""
    sp = d / "state.json"
    try:
        state = _from_json(json.loads(sp.read_text()))
    except (OSError, ValueError) as e:
        raise CheckpointError(sp, f"checkpoint state cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(sp, "checkpoint state is incomplete")
    sums = state.get("checksums") or {}
    out: dict = {"dir": d, "state": state}
    for f in tensors:
        fp = d / f
        if not fp.is_file():
            raise CheckpointError(fp, "checkpoint file is missing")
        if f in sums and sha256_file(fp) != sums[f]:
            raise CheckpointError(fp, "checkpoint file does not match its checksum in state.json (truncated or modified)")
        try:
            out[f] = load_file(str(fp))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(fp, f"checkpoint file cannot be read ({type(e).__name__}: {e})") from None
    return out


def _candidates(root: Path, which: str) -> tuple[list[Path], CheckpointError | None]:
    """Checkpoint dirs to try, in order: the pointer's choice, then (for 'last') the newest other epochs."""
    bad_ptr = None
    try:
        ptr = read_pointer(root)
    except CheckpointError as e:
        ptr, bad_ptr = None, e
    epochs = sorted((d for d in root.glob("epoch-*") if d.is_dir()), key=lambda d: d.name, reverse=True)
    if ptr is None and bad_ptr is None:
        return [], None  # never committed: nothing to resume
    first = [root / ptr[which]] if ptr and ptr.get(which) else []
    if which == "last" or bad_ptr is not None:
        if ptr and ptr.get("best"):
            first.append(root / ptr["best"])
        first += epochs
    seen, out = set(), []
    for d in first:
        if d.name not in seen:
            seen.add(d.name)
            out.append(d)
    return out, bad_ptr


def load_checkpoint(ckpt_dir: str | Path, which: str = "last", warn=_warn) -> dict | None:
    """``{"dir", "model", "optimizer", "rng_tensors", "state"}`` of the last (or best) checkpoint, or None.

    A damaged checkpoint (or pointer) falls back to the newest intact one, with a warning; when none is intact
    a CheckpointError names the damaged file."""
    root = Path(ckpt_dir)
    cands, bad_ptr = _candidates(root, which)
    if not cands:
        if bad_ptr is not None:
            raise CheckpointError(bad_ptr.path, f"{bad_ptr.message}; no checkpoint directory to fall back to "
                                  f"(delete {root} to start again)")
        return None
    errors: list[CheckpointError] = [bad_ptr] if bad_ptr is not None else []
    for d in cands:
        try:
            r = _read_dir(d)
        except CheckpointError as e:
            errors.append(e)
            continue
        if errors:
            warn(f"{errors[0]}; resuming from the intact checkpoint {d} (epoch {r['state']['epoch']}) instead")
        return {
            "dir": d,
            "model": r["model.safetensors"],
            "optimizer": unflatten_optimizer(r["optimizer.safetensors"], r["state"]["optimizer"]),
            "rng_tensors": r["rng.safetensors"],
            "state": r["state"],
        }
    raise CheckpointError(errors[0].path, f"{errors[0].message}; no intact checkpoint to fall back to in {root} "
                          f"(delete {root} to start again)")


def load_model_tensors(ckpt_dir: str | Path, which: str = "best") -> dict[str, torch.Tensor] | None:
    """The model tensors of the best (or last) checkpoint, verified; CheckpointError names a damaged file."""
    ptr = read_pointer(ckpt_dir)
    if not ptr or not ptr.get(which):
        return None
    return _read_dir(Path(ckpt_dir) / ptr[which], ("model.safetensors",))["model.safetensors"]


def config_differences(saved, now, prefix: str = "") -> list[str]:
    """``key: <saved> in the checkpoint, <now> now`` for every leaf that differs between two nested dicts."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in list(saved) + [k for k in now if k not in saved]:
            out += config_differences(saved.get(k, "<absent>"), now.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if saved == now else [f"{prefix.rstrip('.')}: {saved!r} in the checkpoint, {now!r} now"]


def check_resume(loaded: dict, fingerprint: dict) -> None:
    """Refuse to resume a checkpoint trained with another model / params / data size, naming the keys that differ."""
    saved = loaded["state"].get("fingerprint")
    if saved != fingerprint:
        diffs = config_differences(saved or {}, fingerprint) or [f"{saved!r} in the checkpoint, {fingerprint!r} now"]
        raise CheckpointError(loaded["dir"], "cannot resume: the checkpoint was trained with a different config: "
                              + "; ".join(diffs) + " (resume with the original config, or use a new --out directory)")
