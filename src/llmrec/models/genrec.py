"""GenRec: Generative Personalized Sequential Recommendation (Cao & Liò, 2024; arXiv:2407.21191).

A seq2seq Transformer reads the user's sequence written as ID words and generates the next item's ID string:

    encoder:  [BEG] user_u item_a item_b ... [MASK] [END]      decoder:  item_k [END]

**Embeddings (Eq. 2).** Encoder token ``j`` gets EMB(token) + POSEMB(j) + UIDEMB(uid_j) + TIDEMB(iid_j): the
backbone's (scaled) token embedding and its own position embedding, plus a user-ID table on the user's tokens
and a *separate* item-ID table on an item's tokens (all sub-tokens of ``item_1234`` share the item's row).
Index 0 of both tables is a zero vector used by every token without an ID — [BEG], [END], padding and the
[MASK] token, which therefore never carries the masked item's ID. ``id_scale`` multiplies the ID embeddings
(the official code divides N(0,1) rows by sqrt(768); we initialise N(0, ``id_init_std``²) and use 1.0). The
decoder uses token + position embeddings only. Inputs over ``max_len`` (512) tokens drop the oldest items.

**Training** (:mod:`llmrec.training.steploop`): phase 1 *pretraining* (``pretrain_epochs``; 0 = the paper's
"w/o pretraining"): every user's training sequence t_1..t_{n-2} with one item replaced by one [MASK] token
(the last item with probability ``p_mask_last`` = 0.3, else a uniformly drawn item; never the user token; a
fresh mask per batch), the target is that item. Phase 2 *finetuning*: every prefix of t_1..t_{n-2} with
[MASK] appended predicts its next item (``finetune_targets: paper_literal`` also trains on t_{n-1}, the
validation item — its validation scores are then optimistic). Each phase: AdamW with linear warmup over
``warmup_ratio`` (5%) of its steps and linear decay; cross-entropy over the target tokens (padding ignored).
Model selection on validation NDCG@10 during finetuning (every ``eval_every`` steps); test is evaluated once.

**Inference.** Beam search (``num_beams`` = 20) returning the top ``top_k`` (20) beams, constrained by a prefix
trie over every item's token sequence + [END] (``constrained``), so every beam spells a real item; beams are
ranked by their summed log-probability (``length_penalty`` 0: the item's probability). Duplicates are
dropped (first kept); with ``mask_history`` the history's items are removed from the trie per user (so the
20 beams are 20 new items). ``score`` returns :func:`scores_from_lists` of the list. Invalid, duplicate and
history items are counted per evaluation set (``end_eval`` -> metrics.json ``generation``).

**Backbones** (``backbone``): a local Hugging Face seq2seq directory (BART-base on a GPU machine, loaded
unchanged), ``tiny-bart`` (random, with a tokenizer trained on the ID words; ``overrides`` set its size), or
an *encoder* (``minilm``, a BERT directory) warm-started on both sides as a transformers
``EncoderDecoderModel`` (the decoder's cross-attention is new). ``init: scratch`` = same architecture, random.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from llmrec.llm.backbones import config_to_dict
from llmrec.models.base import HistoryBatch, Params
from llmrec.training.base import TorchRecommender


class GenRecParams(Params):
    backbone: str = Field("tiny-bart", description="HF seq2seq dir | tiny-bart | encoder (minilm, BERT dir) -> EncoderDecoderModel")
    init: Literal["pretrained", "scratch"] = Field("pretrained", description="scratch: same architecture, random weights")
    overrides: dict = Field(default_factory=dict, description="HF config fields (tiny-bart: d_model, encoder_layers, ...)")
    tiny_vocab: int = Field(1000, ge=64, description="vocabulary of a tiny-bart tokenizer trained on the ID words")
    max_len: int = Field(512, ge=16, description="encoder tokens; longer inputs drop their oldest items")
    id_init_std: float = Field(0.02, gt=0, description="std of the normal init of the user- and item-ID tables")
    id_scale: float = Field(1.0, gt=0, description="multiplier of the ID embeddings added to the token embeddings")
    # training
    pretrain_epochs: float = Field(10.0, ge=0, description="masked-item pretraining epochs (0 = without pretraining)")
    pretrain_steps: int | None = Field(None, ge=0, description="overrides pretrain_epochs")
    pretrain_max_minutes: float | None = Field(None, gt=0, description="time budget of the pretraining phase")
    finetune_epochs: float | None = Field(None, ge=0, description="default: train.epochs")
    finetune_steps: int | None = Field(None, ge=1, description="overrides finetune_epochs")
    p_mask_last: float = Field(0.3, ge=0, le=1, description="pretraining: probability that the last item is masked")
    finetune_targets: Literal["train", "paper_literal"] = "train"
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="linear warmup share of each phase's steps")
    eval_every: int | None = Field(None, ge=1, description="finetuning steps between validations (default: once per epoch)")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    # inference
    num_beams: int = Field(20, ge=1)
    top_k: int = Field(20, ge=1, description="returned list length (<= num_beams)")
    length_penalty: float = Field(0.0, description="beam score = sum log p / len^lp; 0 ranks items by probability")
    constrained: bool = Field(True, description="prefix-trie constrained beams (every beam a real item)")
    mask_history: bool | None = Field(None, description="drop history items from the beams; null = follow eval.mask_history")
    gen_batch_size: int = Field(16, ge=1, description="users per beam-search call")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    seed: int = Field(0, description="seed of random (scratch / tiny) weights")


class GenRecNet(nn.Module):
    """The seq2seq LM plus the user- and item-ID tables of Eq. 2 (row 0 = no ID, a zero vector)."""

    def __init__(self, lm: nn.Module, n_users: int, n_items: int, d: int, id_init_std: float, id_scale: float):
        super().__init__()
        self.lm = lm
        self.user_id = nn.Embedding(n_users + 1, d, padding_idx=0)
        self.item_id = nn.Embedding(n_items + 1, d, padding_idx=0)
        for e in (self.user_id, self.item_id):
            nn.init.normal_(e.weight, std=id_init_std)
            with torch.no_grad():
                e.weight[0].zero_()
        self.id_scale = id_scale

    def input_embeds(self, enc) -> torch.Tensor:
        tok = self.lm.get_encoder().get_input_embeddings()(enc.input_ids)  # BART's embedding applies its own scale
        return tok + self.id_scale * (self.user_id(enc.user_ids) + self.item_id(enc.item_ids))

    def encode(self, enc):
        return self.lm.get_encoder()(inputs_embeds=self.input_embeds(enc), attention_mask=enc.attention_mask, return_dict=True)

    def loss(self, enc, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the target tokens (labels -100 = padding, not counted)."""
        cfg = self.lm.config
        dec_in = labels.new_full(labels.shape, cfg.pad_token_id)
        dec_in[:, 1:] = labels[:, :-1]
        dec_in[:, 0] = cfg.decoder_start_token_id
        dec_in = dec_in.masked_fill(dec_in == -100, cfg.pad_token_id)
        out = self.lm(inputs_embeds=self.input_embeds(enc), attention_mask=enc.attention_mask, decoder_input_ids=dec_in,
                      return_dict=True)
        return nn.functional.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]).float(), labels.reshape(-1),
                                           ignore_index=-100)


class GenRec(TorchRecommender):
    name = "genrec"
    Params = GenRecParams
    epoch_trainer = False  # phases of steps with warmup (llmrec.training.steploop)

    def __init__(self, params=None, **kw):
        super().__init__(params, **kw)
        self.tokenizer = None
        self.idtext = None
        self._trie = None
        self._extra: dict = {}
        self._eval: dict | None = None
        self._build_info: dict = {}
        self._mask_history: bool = True if self.params.mask_history is None else self.params.mask_history

    # -- building ---------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        from llmrec.llm.backbones import resolve_device

        return resolve_device(self.params.device)

    def _load_lm(self, words: list[str]):
        """(lm, tokenizer, info) for ``params.backbone``."""
        from transformers import AutoConfig

        from llmrec.llm import tiny
        from llmrec.llm.backbones import (
            BackboneError,
            detect_kind,
            load_backbone,
            load_tokenizer,
            quiet_transformers,
            resolve_path,
        )

        p = self.params
        if tiny.is_tiny(p.backbone) and p.backbone.strip().lower() not in ("tiny-bart", "tiny-bert"):
            raise BackboneError(f"genrec backbone {p.backbone!r}: use tiny-bart (seq2seq) or tiny-bert (an encoder, "
                                "warm-started as an encoder-decoder)")
        path = resolve_path(p.backbone, texts=words, tiny_overrides=p.overrides if tiny.is_tiny(p.backbone) else None,
                            seed=p.seed, tiny_vocab=p.tiny_vocab)
        kind = detect_kind(AutoConfig.from_pretrained(str(path), local_files_only=True))
        if kind == "seq2seq":
            bb = load_backbone(p.backbone, head=True, init=p.init, texts=words, overrides=p.overrides, device="cpu",
                               dtype=torch.float32, seed=p.seed, tiny_vocab=p.tiny_vocab)
            return bb.model, bb.tokenizer, {"backbone": str(bb.path), "arch": "seq2seq", "fingerprint": bb.fingerprint}
        if kind != "encoder":
            raise BackboneError(f"genrec backbone {p.backbone!r} is a {kind} model; GenRec needs a seq2seq model or an "
                                "encoder to warm-start an encoder-decoder")
        from transformers import EncoderDecoderConfig, EncoderDecoderModel

        tok = load_tokenizer(path)
        with quiet_transformers():
            if p.init == "pretrained":
                lm = EncoderDecoderModel.from_encoder_decoder_pretrained(str(path), str(path))
            else:
                enc = AutoConfig.from_pretrained(str(path), local_files_only=True)
                cfg = EncoderDecoderConfig.from_encoder_decoder_configs(enc, AutoConfig.from_pretrained(str(path), local_files_only=True))
                state = torch.random.get_rng_state()
                torch.manual_seed(p.seed)
                lm = EncoderDecoderModel(config=cfg)
                torch.random.set_rng_state(state)
        _set_special(lm, tok)
        return lm, tok, {"backbone": str(path), "arch": "encoder-decoder"}

    def build(self, split) -> nn.Module:
        from llmrec.llm.idtext import IdText, id_words

        p = self.params
        if split is None:
            return self._build_from_saved()
        lm, tok, info = self._load_lm(id_words(self.n_users, self.n_items))
        self.tokenizer = tok
        self.idtext = IdText(tok, self.n_users, self.n_items, max_len=p.max_len)
        self._trie = None
        d = int(lm.get_encoder().get_input_embeddings().weight.shape[1])
        net = GenRecNet(lm, self.n_users, self.n_items, d, p.id_init_std, p.id_scale)
        self._extra = {"lm_config": config_to_dict(lm.config), "arch": info["arch"], "tokenizer": _tokenizer_blob(tok),
                       "item_tokens_hash": _tokens_hash(self.idtext.item_tokens), "d_model": d}
        n_lm = sum(x.numel() for x in lm.parameters())
        self._build_info = {**info, "lm_params": n_lm, "id_params": net.user_id.weight.numel() + net.item_id.weight.numel(),
                            "vocab": len(tok), **self.idtext.token_stats()}
        return net.to(self._device())

    def _build_from_saved(self) -> nn.Module:
        from transformers import AutoModelForSeq2SeqLM, EncoderDecoderModel

        from llmrec.llm.backbones import config_from_dict, quiet_transformers
        from llmrec.llm.idtext import IdText

        ex, p = self._extra, self.params
        if not ex:
            raise RuntimeError("GenRec.load: config.json has no 'extra' section (LM config, tokenizer); cannot rebuild")
        cfg = config_from_dict(ex["lm_config"])
        with quiet_transformers():
            lm = EncoderDecoderModel(config=cfg) if ex["arch"] == "encoder-decoder" else AutoModelForSeq2SeqLM.from_config(cfg)
        self.tokenizer = _tokenizer_from_blob(ex["tokenizer"])
        if ex["arch"] == "encoder-decoder":
            _set_special(lm, self.tokenizer)
        self.idtext = IdText(self.tokenizer, self.n_users, self.n_items, max_len=p.max_len)
        if _tokens_hash(self.idtext.item_tokens) != ex["item_tokens_hash"]:
            raise RuntimeError("GenRec.load: the rebuilt tokenizer spells the items differently from the saved one")
        self._trie = None
        return GenRecNet(lm, self.n_users, self.n_items, ex["d_model"], p.id_init_std, p.id_scale).to(self._device())

    def extra_config(self) -> dict:
        return {**self._extra, "mask_history": self._mask_history}

    def load_extra_config(self, extra: dict) -> None:
        self._extra = {k: v for k, v in extra.items() if k != "mask_history"}
        if "mask_history" in extra:
            self._mask_history = bool(extra["mask_history"])

    @property
    def trie(self):
        if self._trie is None:
            self._trie = self.idtext.trie()
        return self._trie

    # -- training ---------------------------------------------------------------------------------
    def fit(self, split, cfg=None, run_dir=None, resume: bool = False, progress: bool = True, callbacks=None,
            accelerator=None, **overrides):
        from llmrec.config import RunConfig, TrainConfig
        from llmrec.training.steploop import Phase, run_phases
        from llmrec.utils.runtime import seed_all

        p = self.params
        if isinstance(cfg, RunConfig):
            train, seed, eval_mask = cfg.train, cfg.seed, cfg.eval.mask_history
        else:
            train, seed, eval_mask = (cfg if isinstance(cfg, TrainConfig) else TrainConfig()), 42, True
        if overrides:
            train = TrainConfig(**{**train.model_dump(), **overrides})
        self._mask_history = eval_mask if p.mask_history is None else p.mask_history
        self.n_items, self.n_users = split.n_items, split.n_users
        seed_all(seed)
        t0 = time.perf_counter()
        self.net = self.build(split)
        build_secs = time.perf_counter() - t0
        seqs = [np.asarray(s, dtype=np.int64) for s in split.train]
        pre_users = np.array([u for u, s in enumerate(seqs) if len(s) >= 1], dtype=np.int64)
        ft_seqs = seqs
        if p.finetune_targets == "paper_literal":  # also train on t_{n-1} (the validation target)
            full = split.dataset.sequences()
            ft_seqs = [np.asarray(f[:-1], dtype=np.int64) if len(f) >= 3 else s for f, s in zip(full, seqs)]
        lens = np.array([len(s) for s in ft_seqs])
        ft_users = np.repeat(np.arange(len(ft_seqs)), np.maximum(lens - 1, 0))
        ft_ends = np.concatenate([np.arange(1, n) for n in lens if n > 1] or [np.zeros(0, np.int64)]).astype(np.int64)
        bs = train.batch_size
        spe_pre = max(1, -(-len(pre_users) // bs))
        spe_ft = max(1, -(-len(ft_users) // bs))
        pre_steps = p.pretrain_steps if p.pretrain_steps is not None else round(p.pretrain_epochs * spe_pre)
        ft_epochs = p.finetune_epochs if p.finetune_epochs is not None else float(train.epochs)
        ft_steps = p.finetune_steps if p.finetune_steps is not None else max(1, round(ft_epochs * spe_ft))
        if len(ft_users) == 0:
            raise ValueError("genrec: no finetuning examples (every training sequence has fewer than 2 items)")
        phases = [
            Phase("pretrain", pre_steps, self._pretrain_batches(seqs, pre_users, bs, seed), max_minutes=p.pretrain_max_minutes),
            Phase("finetune", ft_steps, self._finetune_batches(ft_seqs, ft_users, ft_ends, bs, seed), validate=True,
                  eval_every=p.eval_every or spe_ft),
        ]
        fp = {"model": self.name, "params": p.model_dump(mode="json"), "n_items": self.n_items, "n_users": self.n_users,
              "train": train.model_dump(mode="json", exclude={"max_minutes", "patience"})}
        info = run_phases(self, split, phases, train, seed=seed, mask_history=eval_mask, run_dir=run_dir, resume=resume,
                          progress=progress, warmup_ratio=p.warmup_ratio, checkpoint_every=p.checkpoint_every, fingerprint=fp,
                          callbacks=callbacks)
        self.fit_info = {**info, "genrec": {**self._build_info, "build_seconds": round(build_secs, 1),
                                            "pretrain_examples": len(pre_users), "finetune_examples": len(ft_users),
                                            "steps_per_epoch": {"pretrain": spe_pre, "finetune": spe_ft},
                                            "mask_history": self._mask_history, "batch_size": bs}}
        return self

    def _epoch_chunks(self, n: int, lengths: np.ndarray, bs: int, seed: int, phase: int, epoch: int) -> list[np.ndarray]:
        """One epoch's batches: a seeded permutation, bucketed by length within windows of 32 batches."""
        rng = np.random.default_rng([seed, phase, epoch])
        perm = rng.permutation(n)
        chunks = []
        for s in range(0, n, bs * 32):
            win = perm[s: s + bs * 32]
            win = win[np.argsort(lengths[win], kind="stable")]
            chunks.extend(win[i: i + bs] for i in range(0, len(win), bs))
        order = rng.permutation(len(chunks))
        return [chunks[i] for i in order]

    def _stepper(self, n: int, lengths: np.ndarray, bs: int, seed: int, phase: int):
        spe = max(1, -(-n // bs))
        cache: dict[int, list] = {}

        def idx_of(step: int) -> np.ndarray:
            epoch, pos = divmod(step, spe)
            if epoch not in cache:
                cache.clear()
                cache[epoch] = self._epoch_chunks(n, lengths, bs, seed, phase, epoch)
            return cache[epoch][pos]

        return idx_of

    def _pretrain_batches(self, seqs, users: np.ndarray, bs: int, seed: int):
        p = self.params
        idx_of = self._stepper(len(users), np.array([len(seqs[u]) for u in users]), bs, seed, 1)

        def make(step: int) -> dict:
            rng = np.random.default_rng([seed, 1, step, 7])
            us = users[idx_of(step)]
            hist, mask_at, tgt = [], [], []
            for u in us:
                s = seqs[u]
                start = self.idtext.first_kept(u, s, append_mask=False)
                j = len(s) - 1 if rng.random() < p.p_mask_last else int(rng.integers(start, len(s)))
                hist.append(s)
                mask_at.append(j)
                tgt.append(int(s[j]))
            enc = self.idtext.encode(us, hist, mask_at=mask_at, append_mask=False)
            return {"enc": enc, "labels": self.idtext.targets(tgt)}

        return make

    def _finetune_batches(self, seqs, users: np.ndarray, ends: np.ndarray, bs: int, seed: int):
        idx_of = self._stepper(len(users), ends, bs, seed, 2)

        def make(step: int) -> dict:
            i = idx_of(step)
            us, es = users[i], ends[i]
            enc = self.idtext.encode(us, [seqs[u][:e] for u, e in zip(us, es)], append_mask=True)
            return {"enc": enc, "labels": self.idtext.targets([int(seqs[u][e]) for u, e in zip(us, es)])}

        return make

    def loss(self, batch: dict) -> torch.Tensor:
        dev = self.device
        return self.net.loss(batch["enc"].to(dev), batch["labels"].to(dev))

    # -- inference --------------------------------------------------------------------------------
    def _generation_config(self):
        from transformers import GenerationConfig

        p, sp = self.params, self.idtext.sp
        dec_start = self.net.lm.config.decoder_start_token_id
        return GenerationConfig(
            num_beams=p.num_beams, num_return_sequences=min(p.top_k, p.num_beams), do_sample=False,
            max_new_tokens=self.idtext.max_item_tokens() + 1, length_penalty=p.length_penalty, early_stopping=True,
            decoder_start_token_id=dec_start, eos_token_id=sp["end"], pad_token_id=sp["pad"], bos_token_id=sp["beg"],
            forced_bos_token_id=None, forced_eos_token_id=None, no_repeat_ngram_size=0, min_length=0,
        )

    @torch.no_grad()
    def generate_lists(self, batch: HistoryBatch) -> list[dict]:
        """Per row: ``items`` (ranked, valid, distinct; history removed when masking) and counts."""
        was = self.net.training
        self.net.eval()
        try:
            return self._generate_lists(batch)
        finally:
            self.net.train(was)

    def _generate_lists(self, batch: HistoryBatch) -> list[dict]:
        from transformers.modeling_outputs import BaseModelOutput

        from llmrec.llm.decoding import TrieConstraint, prefix_allowed_tokens_fn

        p, sp, it = self.params, self.idtext.sp, self.idtext
        gc = self._generation_config()
        nret = gc.num_return_sequences
        dev = self.device
        # users of similar history length together (less padding in the encoder and the cross-attention)
        order = np.argsort([len(h) for h in batch.histories], kind="stable")
        rows_by_pos: dict[int, dict] = {}
        for s in range(0, len(batch), p.gen_batch_size):
            pos = order[s: s + p.gen_batch_size]
            users = [int(batch.users[i]) for i in pos]
            hists = [np.asarray(batch.histories[i], dtype=np.int64) for i in pos]
            enc = it.encode(users, hists, append_mask=True).to(dev)
            enc_out = self.net.encode(enc)
            kw = {}
            if p.constrained:
                cons = [TrieConstraint(self.trie, [sp["end"]], exclude=h if self._mask_history else (),
                                       item_tokens=it.item_tokens) for h in hists]
                kw["prefix_allowed_tokens_fn"] = prefix_allowed_tokens_fn(cons, 1, [sp["end"]])
            seq = self.net.lm.generate(encoder_outputs=BaseModelOutput(last_hidden_state=enc_out.last_hidden_state),
                                       attention_mask=enc.attention_mask, generation_config=gc,
                                       **{_cache_kwarg(self.net.lm): _shared_cross_cache(self.net.lm, enc_out.last_hidden_state,
                                                                                        p.num_beams)}, **kw)
            seq = seq.cpu().tolist()
            for r, h in enumerate(hists):
                hset = set(h.tolist())
                items, raw = [], []
                n_inv = n_dup = n_hist = 0
                for j in range(nret):
                    toks = seq[r * nret + j][1:]
                    if sp["end"] in toks:
                        toks = toks[: toks.index(sp["end"])]
                    toks = [t for t in toks if t != sp["pad"]]
                    item = self.trie.lookup(toks)
                    raw.append(self.tokenizer.decode(toks).strip())
                    if item is None:
                        n_inv += 1
                    elif item in items:
                        n_dup += 1
                    elif item in hset:
                        n_hist += 1
                        if not self._mask_history:
                            items.append(item)
                    else:
                        items.append(item)
                rows_by_pos[int(pos[r])] = {"user": users[r], "items": items[: p.top_k], "raw": raw, "invalid": n_inv,
                                            "duplicates": n_dup, "history": n_hist, "truncated": 0}
            if enc.truncated:
                rows_by_pos[int(pos[0])]["truncated"] = enc.truncated
        return [rows_by_pos[i] for i in range(len(batch))]

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        from llmrec.evaluation.evaluator import scores_from_lists

        t0 = time.perf_counter()
        rows = self.generate_lists(batch)
        if self._eval is not None:
            e = self._eval
            e["seconds"] += time.perf_counter() - t0
            for r in rows:
                e["users"] += 1
                e["sequences"] += len(r["raw"])
                e["invalid"] += r["invalid"]
                e["duplicates"] += r["duplicates"]
                e["history_items"] += r["history"]
                e["short_lists"] += int(len(r["items"]) < self.params.top_k)
                e["truncated_inputs"] += r["truncated"]
                e["predictions"].append({"user": r["user"], "items": r["items"], "generated": r["raw"]})
        return scores_from_lists([r["items"] for r in rows], self.n_items)

    def begin_eval(self, name: str) -> None:
        self._eval = {"set": name, "users": 0, "sequences": 0, "invalid": 0, "duplicates": 0, "history_items": 0,
                      "short_lists": 0, "truncated_inputs": 0, "seconds": 0.0, "predictions": []}

    def end_eval(self) -> dict:
        e, self._eval = self._eval, None
        if e is None:
            return {}
        n, m = max(e["users"], 1), max(e["sequences"], 1)
        p = self.params
        return {**e, "invalid_rate": e["invalid"] / m, "duplicate_rate": e["duplicates"] / m,
                "history_item_rate": e["history_items"] / m, "seconds_per_user": e["seconds"] / n,
                "constrained": p.constrained, "mask_history": self._mask_history, "num_beams": p.num_beams, "top_k": p.top_k,
                "length_penalty": p.length_penalty}


def _cache_kwarg(lm) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.x); older versions only know the old name."""
    import inspect

    return "cache" if "cache" in inspect.signature(type(lm).forward).parameters else "past_key_values"


def _shared_cross_cache(lm, enc_h: torch.Tensor, num_beams: int):
    """An encoder-decoder cache whose beam reordering leaves the cross-attention keys/values alone.

    Every beam of a user attends to the same encoder output, and beam search only reorders beams within a
    user, so the cross-attention cache is invariant under the reordering; copying it at every step (what the
    stock cache does) is most of the cost of a 20-beam search over short item strings."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    class _Cache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx):
            self.self_attention_cache.reorder_cache(beam_idx)

    cache = _Cache(DynamicCache(), DynamicCache())
    layers = getattr(lm.get_decoder(), "layers", None)
    if layers is not None and all(hasattr(getattr(x, "encoder_attn", None), "k_proj") for x in layers):
        # BART-style decoder: project the encoder output once per user (not once per beam), then share it
        B, L, _ = enc_h.shape
        for layer in layers:
            a = layer.encoder_attn
            k = a.k_proj(enc_h).view(B, L, -1, a.head_dim).transpose(1, 2).repeat_interleave(num_beams, 0)
            v = a.v_proj(enc_h).view(B, L, -1, a.head_dim).transpose(1, 2).repeat_interleave(num_beams, 0)
            cache.cross_attention_cache.update(k, v, a.layer_idx)
            cache.is_updated[a.layer_idx] = True
    return cache


def _set_special(lm, tok) -> None:
    """Special tokens of a warm-started encoder-decoder: decoder starts with [CLS]/<s>, ends with [SEP]/</s>."""
    from llmrec.llm.idtext import special_ids

    sp = special_ids(tok)
    lm.config.decoder_start_token_id = sp["beg"]
    lm.config.pad_token_id = sp["pad"]
    lm.config.eos_token_id = sp["end"]
    lm.config.vocab_size = lm.config.decoder.vocab_size


def _tokenizer_blob(tok) -> dict:
    if not getattr(tok, "is_fast", False):
        raise ValueError("genrec needs a fast (tokenizers-backed) tokenizer")
    special = {k: getattr(tok, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "cls_token", "sep_token")
               if getattr(tok, k, None) is not None}
    return {"json": tok.backend_tokenizer.to_str(), "special": {k: str(v) for k, v in special.items()}}


def _tokenizer_from_blob(blob: dict):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(blob["json"]), **blob["special"])


def _tokens_hash(seqs: list[list[int]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for s in seqs:
        h.update(np.asarray(s, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]
