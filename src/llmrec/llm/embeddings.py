"""Item embeddings from a language model: pooling, batched encoding, and a safetensors cache.

:class:`ItemEncoder` turns token ids into one vector per item:

- ``item_token`` (HLLM): one learned vector (N(0, 0.02²), the paper's [ITEM]) is appended after the item's
  last token; the last layer's hidden state at that position is the embedding;
- ``mean``: the mean of the last layer over the item's tokens (what sentence encoders such as MiniLM are
  trained for);
- ``cls``: the first position; ``last``: the last real token.

Batches are always **right-padded** by llmrec (whatever the tokenizer's ``padding_side``), with an attention
mask, so an item's embedding does not depend on the other items in its batch. A seq2seq backbone contributes
its encoder.

:func:`cached_item_embeddings` encodes a whole catalogue in length-sorted batches with a progress bar and
caches the (n_items, dim) float32 matrix as ``<cache>/item_embeddings/<dataset>-<key>.safetensors``. The
key hashes the model fingerprint (config + weight files + init), the pooling and its [ITEM] vector, the
template, the prompt, the token limit and the data hash (every item text, in index order), so a second run
reads the file and any change to one of them computes a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from llmrec.utils.padding import pad_rows
from llmrec.utils.runtime import default_cache_dir

POOLINGS = ("item_token", "mean", "cls", "last")
CACHE_VERSION = 1


def pad_right(seqs: list[list[int]], pad_id: int, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T + extra) ids right-padded with ``pad_id`` and (B,) lengths."""
    T = max(len(s) for s in seqs) + extra if len(seqs) else extra
    ids, lens = pad_rows(seqs, max(T, 1), pad=pad_id)
    return torch.from_numpy(ids), torch.from_numpy(lens)


class ItemEncoder(nn.Module):
    """A language model (or its encoder) + a pooling rule: token ids -> item embeddings."""

    def __init__(self, model: nn.Module, hidden_size: int, pooling: str = "item_token", pad_id: int = 0,
                 init_std: float = 0.02, seed: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        self.model = model
        self.pooling = pooling
        self.pad_id = int(pad_id)
        self.hidden_size = int(hidden_size)
        if pooling == "item_token":
            g = torch.Generator().manual_seed(seed)
            p = next(model.parameters())
            init = torch.randn(1, hidden_size, generator=g) * init_std
            self.item_vector = nn.Parameter(init.to(device=p.device, dtype=p.dtype))
        else:
            self.item_vector = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, token_ids: list[list[int]]) -> torch.Tensor:
        """(B, hidden) embeddings of the given token-id lists (differentiable)."""
        extra = 1 if self.pooling == "item_token" else 0
        ids, lens = pad_right(token_ids, self.pad_id, extra)
        ids, lens = ids.to(self.device), lens.to(self.device)
        B, T = ids.shape
        ar = torch.arange(T, device=self.device)
        mask = (ar[None, :] < (lens + extra)[:, None]).long()
        emb_layer = self.model.get_input_embeddings()
        if self.pooling == "item_token":
            x = emb_layer(ids)
            slot = (ar[None, :] == lens[:, None]).unsqueeze(-1)
            x = torch.where(slot, self.item_vector.to(x.dtype).expand(B, T, -1), x)
            out = self.model(inputs_embeds=x, attention_mask=mask)
        else:
            out = self.model(input_ids=ids, attention_mask=mask)
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        rows = torch.arange(B, device=self.device)
        if self.pooling == "item_token":
            return h[rows, lens]
        if self.pooling == "last":
            return h[rows, lens - 1]
        if self.pooling == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1)

    def state_hash(self) -> str:
        """Hash of the [ITEM] vector (part of the cache key: a different vector gives different embeddings)."""
        if self.item_vector is None:
            return "-"
        return hashlib.sha256(self.item_vector.detach().float().cpu().numpy().tobytes()).hexdigest()[:16]


@torch.no_grad()
def encode_tokens(encoder: ItemEncoder, token_ids: list[list[int]], *, batch_size: int = 64, progress: bool = True,
                  desc: str = "item embeddings") -> torch.Tensor:
    """(N, hidden) float32 CPU embeddings, computed in batches of similar length (less padding)."""
    from llmrec.utils.progress import progress_iter

    was_training = encoder.training
    encoder.eval()
    n = len(token_ids)
    order = sorted(range(n), key=lambda i: len(token_ids[i]), reverse=True)
    out = torch.empty((n, encoder.hidden_size), dtype=torch.float32)
    starts = list(range(0, n, batch_size))
    try:
        for s in progress_iter(starts, total=len(starts), desc=desc, enabled=progress):
            idx = order[s: s + batch_size]
            out[torch.tensor(idx)] = encoder([token_ids[i] for i in idx]).float().cpu()
    finally:
        encoder.train(was_training)
    return out


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cache_path(dataset: str, parts: dict, cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in (dataset or "items"))
    return root / "item_embeddings" / f"{safe}-{cache_key(parts)}.safetensors"


def save_embeddings(path: Path, emb: torch.Tensor, meta: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is meant to be shared
    try:
        save_file({"embeddings": emb.detach().float().cpu().contiguous()}, tmp,
                  metadata={k: json.dumps(v, default=str) for k, v in meta.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_embeddings(path: Path) -> tuple[torch.Tensor, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return f.get_tensor("embeddings"), meta


def cached_item_embeddings(
    encoder: ItemEncoder,
    tokenizer,
    texts: list[str],
    *,
    fingerprint: str,
    template: str = "",
    prompt: str = "",
    max_tokens: int = 64,
    dataset: str = "items",
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[torch.Tensor, dict]:
    """(n_items, hidden) embeddings of ``texts``, read from the cache when the same key was computed before.

    Returns the matrix and an info dict (``from_cache``, ``path``, ``seconds``, ``key_parts``)."""
    from llmrec.llm.text import texts_hash, tokenize_texts

    parts = {
        "model": fingerprint,
        "pooling": encoder.pooling,
        "item_vector": encoder.state_hash(),
        "template": template,
        "prompt": prompt,
        "max_tokens": int(max_tokens),
        "data": texts_hash(texts),
        "n": len(texts),
    }
    path = cache_path(dataset, parts, cache_dir)
    t0 = time.perf_counter()
    if use_cache and path.exists():
        try:
            emb, meta = load_embeddings(path)
            if emb.shape == (len(texts), encoder.hidden_size):
                return emb, {"from_cache": True, "path": str(path), "seconds": time.perf_counter() - t0, "key_parts": parts}
        except Exception:  # a corrupt file is recomputed
            pass
    ids = tokenize_texts(tokenizer, texts, max_tokens, prompt)
    emb = encode_tokens(encoder, ids, batch_size=batch_size, progress=progress, desc=f"encode {len(texts)} items")
    secs = time.perf_counter() - t0
    if use_cache:
        try:
            save_embeddings(path, emb, {**parts, "dataset": dataset, "seconds": round(secs, 2)})
        except OSError:
            pass  # a read-only cache must not stop a run
    return emb, {"from_cache": False, "path": str(path), "seconds": secs, "key_parts": parts,
                 "mean_tokens": sum(len(x) for x in ids) / max(1, len(ids))}
