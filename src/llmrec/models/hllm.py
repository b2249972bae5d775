"""HLLM: Hierarchical Large Language Model for recommendation (Chen, Chi, Peng, Yuan; arXiv:2409.12740).

Two tiers with non-shared parameters:

- **Item LLM** — the item's text after a fixed prompt (``item_prompt``, the paper's
  ``"Compress the following sentence into embedding: "``), truncated to ``item_max_tokens`` tokens, then
  one learned [ITEM] vector (N(0, 0.02²), not a vocabulary entry). The last layer's hidden state at that
  position is the item embedding E_i (``pooling: item_token``); ``pooling: mean`` averages the last layer
  over the tokens instead (the paper's Table 10 ablation; what sentence encoders such as MiniLM expect).
- **User LLM** — a causal decoder fed the sequence of item embeddings as ``inputs_embeds`` (its word
  embeddings are discarded); its output at position i, E'_{i+1}, predicts the embedding of the next item.
  When the item and user hidden sizes differ, bias-free projections map item -> user (``proj_in``) and
  user -> item (``proj_out``) space; the loss and the scores live in item space.

Generative objective (Eq. 1, averaged over valid positions instead of summed)::

    L = - mean_{j,i} log  exp(s(E'_{j,i}, E_{j,i})) / ( exp(s(E'_{j,i}, E_{j,i})) + sum_k exp(s(E'_{j,i}, E_k)) )

with s(a, b) = cos(a, b) / tau, a learnable temperature tau (init 0.07, clamped to tau >= 0.01 before
every step), and N random negatives E_k **shared** by every position of every user in the batch (drawn
uniformly; with ``neg_exclude_history`` a negative that is in the user's training sequence is dropped for
that user; a negative equal to the target is always dropped; ``dup_threshold``: negatives whose cosine with
the positive exceeds 0.99 are dropped as duplicates / false negatives).

Modes:

- ``cached`` (the CPU default; the paper's Table 8 "HLLM-cache", its online Stage II): the item LLM is frozen,
  the embedding of every item is computed once (batched, progress bar) and cached as safetensors under
  ``<cache>/item_embeddings/`` keyed by model, template, prompt, pooling and data hash; only the user LLM
  (and projections, temperature) train. A second run reads the file.
- ``end2end``: both LLMs train; each step encodes the batch's unique items (inputs, targets, negatives)
  with gradients. Needs a GPU at any real scale.

``item_init: scratch`` builds the item LLM with the same architecture and random weights (Tables 2 / 7's
"Scratch"); in ``cached`` mode that is a *frozen* random encoder, in ``end2end`` mode it is trained from
scratch. Scores are the cosine between the user vector (the output at the last history position, over
the last ``eval_max_len`` items) and every item embedding; the evaluator ranks all items with the history
masked. Training sequences: each user's training sequence cut into non-overlapping windows of
``max_len + 1`` items from the most recent end (``train_windows: chunk``; the oldest remainder is kept
when it has >= 2 items) or only the last window (``last``).
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from llmrec.llm.backbones import config_to_dict
from llmrec.llm.lora import LoraSettings
from llmrec.llm.text import HLLM_PROMPT
from llmrec.models.base import HistoryBatch, Params
from llmrec.training.base import TorchRecommender
from llmrec.training.data import EpochBatches, pair_keys, user_item_pairs
from llmrec.utils.padding import pad_rows
from llmrec.utils.runtime import note


class HLLMParams(Params):
    # item LLM
    item_backbone: str = Field("minilm", description="HF model dir | packaged name (minilm, smollm2-135m) | tiny-llama/tiny-bert/...")
    item_init: Literal["pretrained", "scratch"] = Field("pretrained", description="scratch = same architecture, random weights")
    item_overrides: dict = Field(default_factory=dict, description="HF config fields (tiny-*: its size; e.g. num_hidden_layers)")
    item_template: str = Field("auto", description="'auto' (dataset default), a format string '{title}', or 'kv:title,description'")
    field_sep: str = Field("", description="separator of 'kv:' fields ('' as in the official code)")
    item_prompt: str = Field(HLLM_PROMPT, description="prepended to every item text")
    item_max_tokens: int = Field(64, ge=1, description="tokens kept per item (head first), before the [ITEM] slot; paper 256")
    pooling: Literal["item_token", "mean", "cls", "last"] = Field("item_token", description="item_token = learned [ITEM] vector")
    item_batch_size: int = Field(64, ge=1, description="items per batch when encoding the catalogue")
    item_lora: LoraSettings | None = Field(None, description="end2end: LoRA adapters on the item LLM instead of full fine-tuning")
    # user LLM
    user_backbone: str = Field("tiny-llama", description="a causal decoder: HF dir | smollm2-135m | tiny-llama | tiny-gpt2")
    user_init: Literal["pretrained", "scratch"] = "pretrained"
    user_overrides: dict = Field(default_factory=dict, description="HF config fields; tiny-*: hidden_size, num_hidden_layers, ...")
    user_lora: LoraSettings | None = None
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the user LLM's input embeddings")
    # training
    mode: Literal["cached", "end2end"] = "cached"
    max_len: int = Field(10, ge=1, description="training window: max_len inputs predicting max_len next items")
    eval_max_len: int | None = Field(None, ge=1, description="history items the user LLM sees when scoring (default max_len)")
    train_windows: Literal["chunk", "last"] = "chunk"
    n_negatives: int = Field(512, ge=1, description="negatives per batch, shared by every position")
    neg_exclude_history: bool = Field(True, description="drop a negative for a user whose training sequence has it")
    dup_threshold: float | None = Field(0.99, gt=-1, le=1, description="drop negatives with cosine > this to the positive; null = off")
    temperature_init: float = Field(0.07, gt=0)
    temperature_min: float = Field(0.01, gt=0)
    learn_temperature: bool = True
    gradient_checkpointing: bool = False
    # system
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N (for encoding the catalogue; training follows the trainer)")
    dtype: str = Field("auto", description="auto: frozen LLMs bf16 on CUDA / fp32 on CPU, trained weights fp32")
    trust_remote_code: bool = False
    retrieval: Literal["exact", "faiss", "faiss-ivf", "faiss-hnsw"] = Field("exact", description="backend of recommend()")
    cache_embeddings: bool = True
    tiny_vocab: int = Field(1000, ge=64, description="vocabulary of a tiny-* item model's tokenizer")
    seed: int = Field(0, ge=0, description="seed of scratch weights and of the [ITEM] vector")

    @model_validator(mode="after")
    def _temperature_range(self):
        if self.temperature_min > self.temperature_init:
            raise ValueError(f"temperature_min ({self.temperature_min}) must not exceed temperature_init ({self.temperature_init})")
        return self


def info_nce(
    pred: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    valid: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    target_ids: torch.Tensor | None = None,
    neg_ids: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
    dup_threshold: float | None = 0.99,
    stats: dict | None = None,
) -> torch.Tensor:
    """HLLM's InfoNCE, averaged over the ``valid`` positions.

    pred, pos: (B, L, D) predictions and positive embeddings; neg: (N, D) negatives shared by all positions;
    valid: (B, L) bool; logit_scale: log(1/tau) (scalar); target_ids (B, L) and neg_ids (N,) drop negatives
    equal to the target; neg_mask (B, N) bool drops negatives per user; dup_threshold drops negatives whose
    cosine with the positive is above it (``stats["dup_dropped"]`` accumulates the share they drop).

    Beware: if the item embeddings collapse (a random-init item LLM trained end to end can do that), the
    duplicate filter drops every negative and the loss reaches 0 without learning anything; ``HLLM.fit``
    reports the share of negatives it dropped as ``fit_info["hllm"]["dup_dropped_share"]``."""
    pred = F.normalize(pred.float(), dim=-1)[valid]
    pos = F.normalize(pos.float(), dim=-1)[valid]
    neg = F.normalize(neg.float(), dim=-1)
    M = pred.shape[0]
    if M == 0:
        return pred.sum() * 0.0
    pos_logit = (pred * pos).sum(-1, keepdim=True)
    neg_logit = pred @ neg.T
    drop = torch.zeros_like(neg_logit, dtype=torch.bool)
    if target_ids is not None and neg_ids is not None:
        drop |= target_ids[valid][:, None] == neg_ids[None, :]
    if neg_mask is not None:
        rows = torch.nonzero(valid, as_tuple=True)[0]
        drop |= neg_mask[rows]
    if dup_threshold is not None:
        with torch.no_grad():
            dup = (pos @ neg.T) > dup_threshold
            drop |= dup
            if stats is not None:
                stats["dup_dropped"] = stats.get("dup_dropped", 0.0) + float(dup.float().mean())
                stats["steps"] = stats.get("steps", 0) + 1
    scale = logit_scale.float().exp()
    # mask after scaling: 0 * inf in the temperature's gradient would be NaN
    neg_logit = (neg_logit * scale).masked_fill(drop, float("-inf"))
    logits = torch.cat([pos_logit * scale, neg_logit], dim=1)
    return F.cross_entropy(logits, torch.zeros(M, dtype=torch.long, device=logits.device))


def make_windows(train: list[np.ndarray], size: int, mode: str = "chunk") -> tuple[torch.Tensor, torch.Tensor]:
    """(W, size) right-padded (-1) windows of the training sequences and (W,) their user indices.

    ``chunk``: non-overlapping windows of ``size`` from the most recent end; the oldest remainder is kept
    when it has at least 2 items. ``last``: only the most recent window. Sequences shorter than 2 give none."""
    rows, users = [], []
    for u, s in enumerate(train):
        n = len(s)
        if n < 2:
            continue
        end = n
        while end >= 2:
            start = max(0, end - size)
            if end - start < 2:
                break
            rows.append(np.asarray(s[start:end], dtype=np.int64))
            users.append(u)
            if mode == "last":
                break
            end = start
    return torch.from_numpy(pad_rows(rows, size, pad=-1)[0]), torch.tensor(users, dtype=torch.long)


def length_bucketed(chunks: list[torch.Tensor], lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                    pool: int = 50) -> list[torch.Tensor]:
    """Re-cut a shuffled epoch into batches of similar length (less padding), in random batch order.

    Consecutive groups of ``pool`` batches are merged, sorted by window length and cut again; the batch
    order is then shuffled with ``generator``. Every window still appears exactly once per epoch."""
    if len(chunks) <= 1:
        return chunks
    perm = torch.cat(chunks)
    out = []
    for s in range(0, len(perm), batch_size * pool):
        grp = perm[s: s + batch_size * pool]
        grp = grp[torch.argsort(lengths[grp], stable=True)]
        out.extend(grp.split(batch_size))
    order = torch.randperm(len(out), generator=generator)
    return [out[i] for i in order.tolist()]


class HLLMNet(nn.Module):
    """Everything HLLM trains and scores with: the user LLM, projections, temperature, item embeddings."""

    def __init__(self, user_model: nn.Module, item_dim: int, user_dim: int, n_items: int, temperature_init: float,
                 learn_temperature: bool, dropout: float = 0.0, item_encoder: nn.Module | None = None):
        super().__init__()
        self.user = user_model
        self.proj_in = nn.Linear(item_dim, user_dim, bias=False) if item_dim != user_dim else nn.Identity()
        self.proj_out = nn.Linear(user_dim, item_dim, bias=False) if item_dim != user_dim else nn.Identity()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)), requires_grad=learn_temperature)
        self.register_buffer("item_emb", torch.zeros(n_items, item_dim))
        self.drop = nn.Dropout(dropout)
        self.item_encoder = item_encoder  # end2end only

    def user_forward(self, E: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, item_dim) predictions of the next item embedding at every position of right-padded inputs."""
        B, L, _ = E.shape
        x = self.drop(self.proj_in(E))
        pos = torch.arange(L, device=E.device).unsqueeze(0).expand(B, L)
        out = self.user(inputs_embeds=x, attention_mask=mask.long(), position_ids=pos)
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return self.proj_out(h)


class HLLM(TorchRecommender):
    name = "hllm"
    Params = HLLMParams

    def __init__(self, params=None, **kw):
        super().__init__(params, **kw)
        self._windows: tuple[torch.Tensor, torch.Tensor] | None = None
        self._seen: torch.Tensor | None = None
        self._item_tokens: list[list[int]] | None = None
        self._extra: dict = {}
        self._build_info: dict = {}
        self._train_version = 0
        self._emb_version = 0
        self._index = None
        self._index_version = -1
        self._loss_stats: dict = {}

    # -- building ---------------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        note("hllm", msg)

    def _trained_dtype(self):
        from llmrec.llm.backbones import resolve_dtype

        return torch.float32 if self.params.dtype == "auto" else resolve_dtype(self.params.dtype)

    def _load_user(self):
        from llmrec.llm.backbones import BackboneError, drop_word_embeddings, load_backbone

        p = self.params
        try:
            bb = load_backbone(p.user_backbone, head=False, init=p.user_init, overrides=p.user_overrides, device="cpu",
                               dtype=self._trained_dtype(), trust_remote_code=p.trust_remote_code,
                               gradient_checkpointing=p.gradient_checkpointing, seed=p.seed, with_tokenizer=False,
                               expect_kind="causal")
        except BackboneError as e:
            raise BackboneError(
                f"HLLM user_backbone: {e}. The user LLM must be a causal decoder (position i may not see later items); "
                "an encoder such as BERT can only be the item LLM"
            ) from None
        drop_word_embeddings(bb.model)
        return bb

    def build(self, split) -> nn.Module:
        if split is None:
            return self._build_from_saved()
        from llmrec.llm.backbones import load_backbone, resolve_device, resolve_dtype
        from llmrec.llm.embeddings import ItemEncoder, cached_item_embeddings
        from llmrec.llm.text import item_texts, resolve_template, texts_hash, tokenize_texts

        p = self.params
        t0 = time.perf_counter()
        ds = split.dataset
        template = resolve_template(ds, p.item_template)
        texts = item_texts(ds, template, p.field_sep)
        dev = resolve_device(p.device)
        frozen = p.mode == "cached"
        dt = resolve_dtype(p.dtype, dev) if frozen else self._trained_dtype()
        item_bb = load_backbone(p.item_backbone, head=False, init=p.item_init, texts=[p.item_prompt + t for t in texts],
                                overrides=p.item_overrides, device=dev if frozen else "cpu", dtype=dt,
                                trust_remote_code=p.trust_remote_code, seed=p.seed, tiny_vocab=p.tiny_vocab,
                                gradient_checkpointing=p.gradient_checkpointing and not frozen)
        tok = item_bb.tokenizer
        encoder = ItemEncoder(item_bb.encoder_module(), item_bb.hidden_size, p.pooling, pad_id=tok.pad_token_id or 0, seed=p.seed)
        item_dim = item_bb.hidden_size
        user_bb = self._load_user()
        user_dim = user_bb.hidden_size
        info = {"item_backbone": str(item_bb.path), "item_kind": item_bb.kind, "item_fingerprint": item_bb.fingerprint,
                "item_params": item_bb.n_params(), "item_dim": item_dim, "user_backbone": str(user_bb.path),
                "user_params": user_bb.n_params(), "user_dim": user_dim, "template": template, "texts_hash": texts_hash(texts),
                "empty_texts": sum(1 for t in texts if not t)}
        if frozen:
            encoder.requires_grad_(False)
            emb, einfo = cached_item_embeddings(
                encoder, tok, texts, fingerprint=item_bb.fingerprint, template=f"{template}|{p.field_sep}", prompt=p.item_prompt,
                max_tokens=p.item_max_tokens, dataset=ds.name, batch_size=p.item_batch_size, use_cache=p.cache_embeddings,
            )
            info["item_embeddings"] = {k: v for k, v in einfo.items() if k != "key_parts"}
            self._log(("read item embeddings from " if einfo["from_cache"] else f"encoded {len(texts)} items in "
                       f"{einfo['seconds']:.1f}s -> ") + einfo["path"])
            net = HLLMNet(user_bb.model, item_dim, user_dim, ds.n_items, p.temperature_init, p.learn_temperature, p.dropout)
            net.item_emb.copy_(emb)
            del item_bb, encoder
        else:
            if p.item_lora is not None:
                from llmrec.llm.lora import apply_lora

                encoder.model = apply_lora(encoder.model, p.item_lora)
            self._item_tokens = tokenize_texts(tok, texts, p.item_max_tokens, p.item_prompt)
            net = HLLMNet(user_bb.model, item_dim, user_dim, ds.n_items, p.temperature_init, p.learn_temperature, p.dropout,
                          item_encoder=encoder)
            self._train_version, self._emb_version = 1, 0  # embeddings are computed on first use
        if p.user_lora is not None:
            from llmrec.llm.lora import apply_lora

            net.user = apply_lora(net.user, p.user_lora)
        if not frozen:
            net.to(self._trained_dtype())
        self._extra = {"item_dim": item_dim, "user_dim": user_dim, "user_config": config_to_dict(user_bb.config),
                       "texts_hash": info["texts_hash"], "template": template}
        info["build_seconds"] = round(time.perf_counter() - t0, 2)
        self._build_info = info
        return net

    def _build_from_saved(self) -> nn.Module:
        from transformers import AutoModel

        from llmrec.llm.backbones import config_from_dict, drop_word_embeddings

        p, ex = self.params, self._extra
        if not ex:
            raise RuntimeError("HLLM.load: config.json has no 'extra' section (user LLM config); cannot rebuild")
        cfg = config_from_dict(ex["user_config"])
        user = AutoModel.from_config(cfg)
        drop_word_embeddings(user)
        if p.user_lora is not None:
            from llmrec.llm.lora import apply_lora

            user = apply_lora(user, p.user_lora)
        # a loaded model scores from the saved item embeddings; the item LLM itself is not rebuilt
        return HLLMNet(user, ex["item_dim"], ex["user_dim"], self.n_items, p.temperature_init, p.learn_temperature, p.dropout)

    def extra_config(self) -> dict:
        return dict(self._extra)

    def load_extra_config(self, extra: dict) -> None:
        self._extra = dict(extra)

    def fit(self, split, *args, **kw):
        self._loss_stats = {}
        self._windows = self._seen = None  # built from this split on the first epoch
        super().fit(split, *args, **kw)
        info = dict(self._build_info)
        st = self._loss_stats
        if st.get("steps"):
            info["dup_dropped_share"] = st["dup_dropped"] / st["steps"]
            if info["dup_dropped_share"] > 0.5:
                self._log(f"warning: the duplicate filter (cos > {self.params.dup_threshold}) dropped "
                          f"{info['dup_dropped_share']:.0%} of the negatives; the item embeddings are nearly "
                          "identical (collapsed?) -- consider dup_threshold: null")
        info["temperature"] = float(torch.exp(-self.net.logit_scale.detach()))
        self.fit_info = {**self.fit_info, "hllm": info}
        return self

    def trainable_parameters(self):
        return [p for p in self.net.parameters() if p.requires_grad]

    # -- persistence ------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.net is not None and self.net.item_encoder is not None:
            self._refresh_item_emb()
        return super().state_tensors()

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.net is None:
            self.net = self.build(None)
        own = self.net.state_dict()
        missing = [k for k in own if k not in tensors and not k.startswith("item_encoder.")]
        if missing:
            raise KeyError(f"HLLM state is missing {missing[:5]}")
        dev = self.device
        self.net.load_state_dict({k: v.to(dev) for k, v in tensors.items() if k in own}, strict=False)
        self._emb_version = self._train_version  # the saved item_emb is current

    # -- training ---------------------------------------------------------------------------------
    def train_batches(self, split, generator: torch.Generator, batch_size: int):
        p = self.params
        if self._windows is None:
            self._windows = make_windows(split.train, p.max_len + 1, p.train_windows)
            if p.neg_exclude_history:
                u, i = user_item_pairs(split.train)
                self._seen = pair_keys(u, i, self.n_items)
        windows, wusers = self._windows
        n_items, N = self.n_items, p.n_negatives
        lengths = (windows >= 0).sum(1)

        def make(idx: torch.Tensor) -> dict:
            seq = windows[idx]
            keep = (seq >= 0).any(0)
            seq = seq[:, : int(keep.nonzero().max()) + 1] if bool(keep.any()) else seq[:, :2]
            neg = torch.randint(0, n_items, (N,), generator=generator)
            batch = {"seq": seq, "neg": neg}
            if self._seen is not None:
                batch["neg_mask"] = torch.isin(wusers[idx][:, None] * n_items + neg[None, :], self._seen)
            return batch

        batches = EpochBatches(len(windows), batch_size, generator, make)
        batches.chunks = length_bucketed(batches.chunks, lengths, batch_size, generator)
        return batches

    def _embed_batch_items(self, seq: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """end2end: embeddings of the batch's items with gradients (each unique item encoded once)."""
        valid = seq >= 0
        flat = torch.cat([seq[valid], neg])
        uniq, inv = torch.unique(flat, return_inverse=True)
        emb = self.net.item_encoder([self._item_tokens[i] for i in uniq.tolist()])
        n_valid = int(valid.sum())
        E = emb.new_zeros((*seq.shape, emb.shape[-1]))
        E[valid] = emb[inv[:n_valid]]
        return E, emb[inv[n_valid:]]

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        p, net = self.params, self.net
        seq, neg = batch["seq"], batch["neg"]
        valid = seq >= 0
        with torch.no_grad():
            net.logit_scale.clamp_(0.0, math.log(1.0 / p.temperature_min))
        if net.item_encoder is not None:
            E, E_neg = self._embed_batch_items(seq, neg)
            self._train_version += 1
        else:
            E, E_neg = net.item_emb[seq.clamp_min(0)], net.item_emb[neg]
        pred = net.user_forward(E[:, :-1], valid[:, :-1])
        return info_nce(pred, E[:, 1:], E_neg, valid[:, 1:], net.logit_scale, target_ids=seq[:, 1:], neg_ids=neg,
                        neg_mask=batch.get("neg_mask"), dup_threshold=p.dup_threshold, stats=self._loss_stats)

    # -- scoring ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _refresh_item_emb(self) -> None:
        """end2end: recompute every item's embedding with the current item LLM (when it has changed)."""
        net = self.net
        if net.item_encoder is None or self._emb_version == self._train_version or self._item_tokens is None:
            return
        from llmrec.llm.embeddings import encode_tokens

        emb = encode_tokens(net.item_encoder, self._item_tokens, batch_size=self.params.item_batch_size, progress=False)
        net.item_emb.copy_(emb.to(net.item_emb.device, net.item_emb.dtype))
        self._emb_version = self._train_version

    @torch.no_grad()
    def user_embeddings(self, batch: HistoryBatch) -> torch.Tensor:
        """(B, item_dim) L2-normalised user vectors (zero for an empty history)."""
        p, net = self.params, self.net
        L = p.eval_max_len or p.max_len
        hist = [np.asarray(h[-L:], dtype=np.int64) for h in batch.histories]
        lens = torch.tensor([len(h) for h in hist])
        dev = self.device
        out = torch.zeros((len(hist), net.item_emb.shape[1]), device=dev)
        rows = torch.nonzero(lens > 0).flatten()
        rows = rows[torch.argsort(lens[rows], stable=True)]  # similar lengths together: less padding
        for s in range(0, len(rows), 256):
            r = rows[s: s + 256]
            seq = torch.from_numpy(pad_rows([hist[i] for i in r.tolist()], pad=-1)[0]).to(dev)
            pred = net.user_forward(net.item_emb[seq.clamp_min(0)], seq >= 0)
            last = (lens[r] - 1).to(dev)
            out[r.to(dev)] = F.normalize(pred[torch.arange(len(r), device=dev), last].float(), dim=-1)
        return out

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        self._refresh_item_emb()
        u = self.user_embeddings(batch)
        items = F.normalize(self.net.item_emb.float(), dim=-1)
        return u @ items.T

    @torch.no_grad()
    def recommend(self, batch: HistoryBatch, k: int = 10, mask_history: bool = True):
        """Top-k items by nearest-neighbour search (``params.retrieval``: exact torch top-K or FAISS)."""
        from llmrec.llm.retrieval import build_index

        was = self.net.training
        self.net.eval()
        try:
            self._refresh_item_emb()
            if self._index is None or self._index_version != self._emb_version:
                self._index = build_index(self.net.item_emb.float().cpu(), backend=self.params.retrieval, metric="cosine")
                self._index_version = self._emb_version
            u = self.user_embeddings(batch).cpu()
        finally:
            self.net.train(was)
        scores, ids = self._index.search(u, k, exclude=batch.histories if mask_history else None)
        return ids, scores
