"""Training checkpoints: model + optimizer + RNG states + loop counters, atomically, without pickle.

Layout under ``DIR/checkpoints/``::

    epoch-0007/                 one directory per kept epoch (the last one, and the best one)
        model.safetensors       the model's state tensors (``Recommender.state_tensors()``)
        optimizer.safetensors   every tensor of ``optimizer.state_dict()["state"]``, keyed ``<param>.<name>``
        rng.safetensors         torch CPU (and CUDA) RNG states and the data-order generator (uint8 tensors)
        state.json              epoch, best metric, early-stopping counters, history, optimizer structure
                                (param groups, non-tensor state), numpy / python RNG states, scaler state
    latest.json                 {"last": "epoch-0007", "best": "epoch-0005"} -- the commit point

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

from llmrec.utils.io import atomic_write_json

POINTER = "latest.json"


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
        payload = {**state, "epoch": epoch, "optimizer": opt_meta, "rng": rng_meta, "scaler": scaler_state}
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
    prev = read_pointer(root) or {}
    best = name if is_best or not prev.get("best") else prev["best"]
    atomic_write_json(root / POINTER, {"last": name, "best": best})
    for d in root.iterdir():
        if d.is_dir() and d.name not in (name, best):
            shutil.rmtree(d, ignore_errors=True)
    return final


def read_pointer(ckpt_dir: str | Path) -> dict | None:
    p = Path(ckpt_dir) / POINTER
    if not p.exists():
        return None
    return json.loads(p.read_text())


def load_checkpoint(ckpt_dir: str | Path, which: str = "last") -> dict | None:
    """``{"dir", "model", "optimizer", "rng_tensors", "state"}`` of the last (or best) checkpoint, or None."""
    ptr = read_pointer(ckpt_dir)
    if not ptr or not ptr.get(which):
        return None
    d = Path(ckpt_dir) / ptr[which]
    state = _from_json(json.loads((d / "state.json").read_text()))
    return {
        "dir": d,
        "model": load_file(str(d / "model.safetensors")),
        "optimizer": unflatten_optimizer(load_file(str(d / "optimizer.safetensors")), state["optimizer"]),
        "rng_tensors": load_file(str(d / "rng.safetensors")),
        "state": state,
    }


def load_model_tensors(ckpt_dir: str | Path, which: str = "best") -> dict[str, torch.Tensor] | None:
    ptr = read_pointer(ckpt_dir)
    if not ptr or not ptr.get(which):
        return None
    return load_file(str(Path(ckpt_dir) / ptr[which] / "model.safetensors"))
