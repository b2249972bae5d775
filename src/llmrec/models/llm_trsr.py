"""LLM-TRSR: Harnessing Large Language Models for Text-Rich Sequential Recommendation (Zheng et al., WWW 2024).

Spec: ../shared/specs/llm-trsr-hnvm.md Part A. A pointwise yes/no recommender over text:

1. **History to text**: each item is one line of ``key: value`` fields (``item_fields``; auto: ``title`` for
   shopping data such as Beauty, ``category; subcategory; title`` for MIND), cut into blocks of ``block_size``
   (5) items from the oldest (:mod:`llmrec.llm.summarize`).
2. **Summary** (``summary``), by a frozen summarizer through the cached, resumable generation stage:
   ``hierarchical`` (block summaries merged ``fan_in`` at a time) or ``recurrent`` (summary_k = LLM(summary_(k-1),
   block_k)); ``none`` is the TALLRec-style ablation (summary = ``NULL``). The summary covers the history's last
   ``max_history`` items. Summaries of every training, validation and test history are made in ``fit`` (from
   histories only; no target is ever shown) and kept with the model; an unseen history at scoring time is
   summarised on demand.
3. **Recommender**: instruction + summary + the ``recent_items`` most recent items + the candidate's text, then
   ``yes``/``no``. LoRA (r 8, alpha 16, dropout 0.05, attention projections) through
   :func:`llmrec.llm.tuning.instruction_tune`, the loss on the whole prompt (``loss_on: all``, the paper's Eq. 1)
   or on the answer only (``response``), 1:1 negatives from the split's training records.
4. **Scoring**: P = softmax over the [yes, no] logits at the answer position (``score: softmax``, the official code)
   or the paper's literal Eq. 3, exp(p_yes) / (exp(p_yes) + exp(p_no)) with full-vocabulary probabilities
   (``score: eq3``, two passes). The prompt is cut where the candidate starts: the shared prefix (instruction,
   summary, recent items) is encoded once per user and the candidates run as one batch of short suffixes on its
   key/value cache (``prefix_cache: true``; :func:`llmrec.llm.scoring.yes_no_scores`); ``false`` scores whole
   prompts. Training tokenises the same prefix/suffix strings; ``fit_info`` counts prompts whose joint
   tokenisation differs from the split one (``boundary_mismatch``; 0 for byte-level BPE at a newline).

Only sampled candidates are ranked (``split.protocol: records`` with its 1:20 sets, or ``split.candidates``):
``score`` over the whole catalogue would be one LLM call per item. Prompt presets: ``paper`` (the figures'
wording, numbered item lines) and ``code`` (the official code's strings); see the LLM-TRSR section of
:mod:`llmrec.llm.prompts`. Plain-text prompts carry the paper's ``### User:`` / ``### Assistant:`` markers; with
``chat: true`` (recommender) or ``summary_chat`` (summarizer, auto = when the tokenizer has a chat template) the
model's chat template replaces them.

Saved model: config.json + model.safetensors with the LoRA tensors and two uint8 tensors holding JSON (the item
texts and the summaries), so that the generic ``Recommender.load`` restores everything; the backbone is reloaded
from its directory and checked against its fingerprint.
"""

from __future__ import annotations

import json
import time
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from llmrec.llm.lora import LoraSettings
from llmrec.models.base import HistoryBatch, Params, Recommender, UnsupportedOperation
from llmrec.utils.runtime import default_cache_dir, note

SENTINEL = "\x00LLMTRSR-CANDIDATE\x00"
LABELS = {"title": "Title", "category": "Category", "subcategory": "SubCategory", "abstract": "Abstract"}


class LLMTRSRParams(Params):
    # recommender backbone
    backbone: str = Field("smollm2-135m", description="HF model dir | smollm2-135m | tiny-llama (causal LM)")
    backbone_overrides: dict = Field(default_factory=dict, description="HF config fields (tiny-*: its size)")
    tiny_vocab: int = Field(1000, ge=64, description="vocabulary of a tiny-* model's tokenizer")
    device: str = "auto"
    dtype: str = "auto"
    # history text
    preset: Literal["paper", "code"] = Field("paper", description="prompt wording: the paper's figures or the official code")
    domain: Literal["auto", "shopping", "news"] = Field("auto", description="auto: news for MIND datasets, else shopping")
    item_fields: list[str] | Literal["auto"] = Field("auto", description="text columns rendered as 'Key: value'")
    item_max_chars: int | None = Field(None, ge=8, description="cut each item's text to this many characters")
    max_history: int = Field(25, ge=1, description="history items summarised (the most recent)")
    # summaries
    summary: Literal["hierarchical", "recurrent", "none"] = "hierarchical"
    summarizer: str = Field("same", description="'same' = a frozen copy of the recommender's base model, or a backbone spec")
    summarizer_overrides: dict = Field(default_factory=dict)
    block_size: int = Field(5, ge=1, description="items per block (paper: 5)")
    fan_in: int = Field(5, ge=2, description="hierarchical: summaries per merge prompt (more -> extra levels)")
    summary_max_new_tokens: int = Field(256, ge=1)
    summary_do_sample: bool = Field(False, description="paper-fidelity preset: true with summary_seed 42")
    summary_temperature: float = Field(1.0, gt=0)
    summary_top_p: float = Field(1.0, gt=0, le=1)
    summary_repetition_penalty: float = Field(1.0, gt=0)
    summary_seed: int = 42
    summary_batch_size: int = Field(8, ge=1)
    summary_chat: bool | None = Field(None, description="summarizer chat template: None = when the tokenizer has one")
    summary_max_prompt_tokens: int | None = Field(None, ge=16)
    # recommendation prompt
    recent_items: int = Field(3, ge=0, description="most recent items listed in the prompt (paper: 3; 0 -> NULL)")
    chat: bool = Field(False, description="recommender prompts through the chat template (paper: plain text)")
    answers: tuple[str, str] = Field(("yes", "no"), description="answer words (single tokens), lowercase as in the code")
    # tuning (llmrec.llm.tuning)
    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings, description="paper/code: r 8, alpha 16, dropout 0.05, q/k/v/o")
    lr: float = Field(1e-4, gt=0, le=1)
    epochs: int = Field(1, ge=1, description="paper: 8")
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(16, ge=1, description="paper: batch 1 x accumulation 64")
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    schedule: Literal["cosine", "linear", "constant"] = Field("constant", description="the code's DeepSpeed WarmupLR = constant")
    weight_decay: float = Field(5e-4, ge=0)
    grad_clip: float | None = Field(1.0, ge=0)
    loss_on: Literal["all", "response"] = Field("all", description="all = the paper's Eq. 1 (whole prompt); response = answer only")
    max_length: int = Field(2048, ge=16)
    max_minutes: float | None = Field(None, gt=0)
    checkpoint_every: int = Field(50, ge=1)
    tuning_seed: int = 0
    max_train_records: int | None = Field(None, ge=1, description="use at most this many training records (seeded)")
    select_epoch: bool = Field(False, description="score the validation records after every epoch and keep the best "
                                                  "epoch's weights by Recall@3+@5+@10 (the official code's selection)")
    # scoring
    score: Literal["softmax", "eq3"] = Field("softmax", description="softmax over yes/no logits (code) | the paper's literal Eq. 3")
    prefix_cache: bool = Field(True, description="encode the shared prefix once per user, candidates as suffixes")
    score_batch_size: int = Field(32, ge=1, description="candidate suffixes per forward pass")
    cache_dir: str | None = Field(None, description="generation cache root (default: the llmrec cache)")
    seed: int = 0


def _log(msg: str) -> None:
    note("llm_trsr", msg)


def _blob(obj) -> torch.Tensor:
    return torch.frombuffer(bytearray(json.dumps(obj, ensure_ascii=False).encode("utf-8")), dtype=torch.uint8).clone()


def _unblob(t: torch.Tensor):
    return json.loads(bytes(t.cpu().numpy().tobytes()).decode("utf-8"))


def render_item(row: dict, fields: list[str], max_chars: int | None = None) -> str:
    """One item as ``Key: value; Key: value`` (empty fields skipped)."""
    parts = []
    for f in fields:
        v = row.get(f)
        s = "" if v is None else " ".join(str(v).split())
        if s and s.lower() not in ("nan", "none", "null"):
            parts.append(f"{LABELS.get(f, f)}: {s}")
    text = "; ".join(parts)
    return text if max_chars is None or len(text) <= max_chars else text[:max_chars].rstrip() + "..."


def tokenizer_corpus(item_texts: list[str], answers=("yes", "no")) -> list[str]:
    """What a tiny-* backbone's tokenizer is trained on: item texts, the LLM-TRSR prompts and the answer words
    (repeated, so that each answer becomes one token)."""
    from llmrec.llm.prompts import TEMPLATES

    instr = [t.user for n, t in TEMPLATES.items() if n.startswith("llm_trsr.")]
    return list(item_texts) + instr + [" ".join(answers)] * 200 + ["### User:\n### Assistant:\n"] * 50


class LLMTRSR(Recommender):
    name = "llm_trsr"
    Params = LLMTRSRParams

    def __init__(self, params=None, **kw):
        super().__init__(params, **kw)
        self.item_texts: list[str] = []
        self.summaries: dict[str, str] = {}
        self.fit_info: dict = {}
        self._bb = None  # the recommender backbone (LoRA-wrapped after fit)
        self._summarizer = None
        self._extra: dict = {}
        self._pending: dict[str, torch.Tensor] | None = None
        self._eval: dict = {}

    # -- text -------------------------------------------------------------------------------------
    def _domain(self, ds_name: str) -> str:
        if self.params.domain != "auto":
            return self.params.domain
        return "news" if "mind" in ds_name.lower() else "shopping"

    def _fields(self, ds, domain: str) -> list[str]:
        cols = ds.text_columns()
        if self.params.item_fields != "auto":
            missing = [f for f in self.params.item_fields if f not in cols]
            if missing:
                raise ValueError(f"params.item_fields: {missing} are not text columns of {ds.name!r} ({cols})")
            return list(self.params.item_fields)
        want = ["category", "subcategory", "title"] if domain == "news" else ["title"]
        got = [f for f in want if f in cols]
        return got or [c for c in cols if c not in ("asin",)] or cols

    def _template(self, role: str) -> str:
        return f"llm_trsr.{self.params.preset}.{self._extra['domain']}.{role}"

    def _items_style(self) -> str:
        return "numbered" if self.params.preset == "paper" else "plain"

    def _window(self, h: np.ndarray) -> np.ndarray:
        return np.asarray(h[max(0, len(h) - self.params.max_history):], dtype=np.int64)

    @staticmethod
    def _key(window: np.ndarray) -> str:
        return ",".join(map(str, window.tolist()))

    # -- backbones --------------------------------------------------------------------------------
    def _tiny_texts(self) -> list[str]:
        return tokenizer_corpus(self.item_texts, self.params.answers)

    def _load(self, spec: str, overrides: dict, lora=None):
        from llmrec.llm.backbones import load_backbone

        p = self.params
        return load_backbone(spec, head=True, texts=self._tiny_texts(), overrides=overrides, device=p.device,
                             dtype=p.dtype, tiny_vocab=p.tiny_vocab, seed=p.seed, lora=lora, expect_kind="causal")

    def _summarizer_bb(self):
        if self._summarizer is None:
            p = self.params
            same = p.summarizer == "same"
            self._summarizer = self._load(p.backbone if same else p.summarizer,
                                          p.backbone_overrides if same else p.summarizer_overrides)
        return self._summarizer

    def _backbone(self):
        if self._bb is None:
            if self._pending is None:
                raise RuntimeError("llm_trsr: the model was neither fitted nor loaded")
            from llmrec.llm.tuning import load_trainable_state

            p, ex = self.params, self._extra
            bb = self._load(ex.get("backbone_path") or p.backbone, {} if ex.get("backbone_path") else p.backbone_overrides,
                            lora=p.lora if p.method == "lora" else None)
            if ex.get("backbone_fingerprint") and bb.fingerprint != ex["backbone_fingerprint"]:
                raise ValueError(f"llm_trsr: the backbone at {bb.path} is not the one this model was tuned on "
                                 f"(fingerprint {bb.fingerprint} != {ex['backbone_fingerprint']})")
            load_trainable_state(bb, self._pending)
            self._bb, self._pending = bb, None
        return self._bb

    # -- summaries --------------------------------------------------------------------------------
    def _generation_settings(self):
        from llmrec.llm.generation import GenerationSettings

        p = self.params
        return GenerationSettings(max_new_tokens=p.summary_max_new_tokens, do_sample=p.summary_do_sample,
                                  temperature=p.summary_temperature, top_p=p.summary_top_p,
                                  repetition_penalty=p.summary_repetition_penalty, seed=p.summary_seed,
                                  batch_size=p.summary_batch_size, chat=p.summary_chat,
                                  max_prompt_tokens=p.summary_max_prompt_tokens)

    def _cache_root(self):
        if self.params.cache_dir:
            return self.params.cache_dir
        return default_cache_dir()

    def summarize(self, windows: list[np.ndarray], progress: bool = True) -> dict:
        """Summaries of the histories not summarised yet (cached on disk by the generation stage)."""
        from llmrec.llm import summarize as S

        p = self.params
        todo, seen = [], set()
        for w in windows:
            k = self._key(w)
            if k not in self.summaries and k not in seen:
                seen.add(k)
                todo.append(w)
        if p.summary == "none" or not todo:
            return {"histories": len(todo), "n_prompts": 0, "n_generated": 0, "seconds": 0.0}
        prompts = S.SummaryPrompts(block=self._template("block"), merge=self._template("merge"),
                                   update=self._template("update"), items=self._items_style(),
                                   summaries="numbered" if p.preset == "paper" else "bracketed")
        texts = [[self.item_texts[i] for i in w.tolist()] for w in todo]
        kw = {"block_size": p.block_size, "cache_dir": self._cache_root(), "progress": progress}
        bb = self._summarizer_bb()
        if p.summary == "hierarchical":
            res = S.hierarchical(bb, texts, prompts, self._generation_settings(), fan_in=p.fan_in, **kw)
        else:
            res = S.recurrent(bb, texts, prompts, self._generation_settings(), **kw)
        for w, s in zip(todo, res.summaries):
            self.summaries[self._key(w)] = s
        return {"histories": len(todo), **res.info}

    def _summary_text(self, window: np.ndarray) -> str:
        if self.params.summary == "none":
            return "NULL"
        return self.summaries[self._key(window)]

    # -- prompts ----------------------------------------------------------------------------------
    def user_text(self, window: np.ndarray) -> str:
        """The recommendation prompt's user text with :data:`SENTINEL` where the candidate goes."""
        from llmrec.llm import summarize as S
        from llmrec.llm.prompts import get_template

        p = self.params
        recent = window[len(window) - p.recent_items:] if p.recent_items else window[:0]
        recent_text = S.format_items([self.item_texts[i] for i in recent.tolist()], self._items_style()) or "NULL"
        body = get_template(self._template("recommend")).render(summary=self._summary_text(window), recent=recent_text,
                                                                 candidate=SENTINEL)
        return S.turn(body, p.chat)

    def prefix_and_tail(self, window: np.ndarray, tokenizer) -> tuple[str, str]:
        """The model-input text before the candidate and the text after it (the answer follows the tail)."""
        from llmrec.llm.prompts import as_model_input

        text = as_model_input(tokenizer, self.user_text(window), chat=self.params.chat)
        if text.count(SENTINEL) != 1:
            raise ValueError("llm_trsr: the recommendation prompt must contain the candidate exactly once")
        head, tail = text.split(SENTINEL)
        return head, tail

    # -- fitting ----------------------------------------------------------------------------------
    def _train_records(self, split):
        from llmrec.data.records import sample_negatives
        from llmrec.data.splits import EvalSet

        tr = getattr(split, "train_records", None)
        if tr is None:  # another protocol: each training sequence's last item, 1 uniform negative
            users = np.array([u for u, s in enumerate(split.train) if len(s) >= 2], dtype=np.int64)
            hist = [self._window(split.train[u][:-1]) for u in users]
            tgt = np.array([split.train[u][-1] for u in users], dtype=np.int64)
            nonempty = [s for s in split.train if len(s)]
            pool = np.unique(np.concatenate(nonempty)) if nonempty else np.zeros(0, dtype=np.int64)
            neg = sample_negatives(hist, tgt, pool, 1, seed=self.params.seed + 3)
            tr = EvalSet(users=users, histories=hist, targets=tgt, candidates=np.concatenate([tgt[:, None], neg], 1),
                         name="train")
        n = self.params.max_train_records
        if n is not None and n < len(tr):
            keep = np.sort(np.random.default_rng(self.params.seed).permutation(len(tr))[:n])
            tr = tr.subset(keep)
        return tr

    def fit(self, split, cfg=None, run_dir=None, resume: bool = False, progress: bool = True, **kw) -> LLMTRSR:
        from llmrec.llm.prompts import as_model_input
        from llmrec.llm.scoring import encode_prefix, encode_suffix
        from llmrec.llm.tuning import SFTExample, TuningSettings, instruction_tune

        p = self.params
        t_all = time.perf_counter()
        ds = split.dataset
        self.n_items, self.n_users = split.n_items, split.n_users
        domain = self._domain(ds.name)
        fields = self._fields(ds, domain)
        self._extra = {"domain": domain, "item_fields": fields}
        rows = {r["item"]: r for r in ds.item_text.iter_rows(named=True)}
        self.item_texts = [render_item(rows.get(i, {}), fields, p.item_max_chars) for i in range(ds.n_items)]
        secs: dict[str, float] = {}

        tr = self._train_records(split)
        windows = [self._window(h) for h in tr.histories]
        for es in (split.valid, split.test, *getattr(split, "extra_tests", {}).values()):
            windows += [self._window(h) for h in es.histories]
        t = time.perf_counter()
        sum_info = self.summarize(windows, progress=progress)
        secs["summaries"] = time.perf_counter() - t
        self._summarizer = None  # free it; unseen histories at scoring time reload it
        _log(f"summaries: {sum_info.get('n_prompts', 0)} prompts, {sum_info.get('n_generated', 0)} generated, "
             f"{secs['summaries']:.1f}s")

        t = time.perf_counter()
        bb = self._load(p.backbone, p.backbone_overrides)
        tok = bb.tokenizer
        self._extra.update({"backbone_path": str(bb.path), "backbone_fingerprint": bb.fingerprint})
        secs["load_backbone"] = time.perf_counter() - t
        examples, mismatch, n_pos = [], 0, 0
        for r in range(len(tr)):
            w = self._window(tr.histories[r])
            user = self.user_text(w)
            head, tail = self.prefix_and_tail(w, tok)
            for j, item in enumerate(tr.candidates[r].tolist()):
                suffix = self.item_texts[item] + tail
                prompt = user.replace(SENTINEL, self.item_texts[item])
                if as_model_input(tok, prompt, chat=p.chat) != head + suffix:  # what tuning reads = what scoring reads
                    raise AssertionError("llm_trsr: training and scoring prompts differ")
                if len(examples) < 64 and encode_prefix(tok, head + suffix) != encode_prefix(tok, head) + encode_suffix(tok, suffix):
                    mismatch += 1
                n_pos += j == 0
                examples.append(SFTExample(prompt=prompt, response=p.answers[0] if j == 0 else p.answers[1]))
        settings = TuningSettings(method=p.method, lora=p.lora, lr=p.lr, epochs=p.epochs, max_steps=p.max_steps,
                                  batch_size=p.batch_size, grad_accum=p.grad_accum, warmup_ratio=p.warmup_ratio,
                                  schedule=p.schedule, weight_decay=p.weight_decay, grad_clip=p.grad_clip,
                                  loss_on=p.loss_on, max_length=p.max_length, max_minutes=p.max_minutes,
                                  checkpoint_every=p.checkpoint_every, seed=p.tuning_seed, chat=p.chat)
        t = time.perf_counter()
        selection: list[dict] = []
        callback = self._epoch_selector(bb, split.valid, len(examples), selection) if p.select_epoch else None
        tinfo = instruction_tune(bb, examples, settings, run_dir=run_dir, resume=resume, progress=progress,
                                 callback=callback)
        secs["tuning"] = time.perf_counter() - t
        self._bb = bb
        tinfo = {k: v for k, v in tinfo.items() if k != "losses"}
        if selection:
            from llmrec.llm.tuning import load_trainable_state

            best = max(selection, key=lambda r: (r["valid_recall_3_5_10"], -r["epoch"]))
            load_trainable_state(bb, best.pop("_state"))
            for r in selection:
                r.pop("_state", None)
            tinfo["epoch_selection"] = {"selected_epoch": best["epoch"], "epochs": selection}
        secs["fit_total"] = time.perf_counter() - t_all
        self.fit_info = {"llm_trsr": {
            "domain": domain, "item_fields": fields, "summary": p.summary, "preset": p.preset,
            "train_records": len(tr), "train_examples": len(examples), "train_positives": n_pos,
            "boundary_mismatch": {"checked": min(64, len(examples)), "mismatched": mismatch},
            "summaries": {k: v for k, v in sum_info.items()},
            "tuning": tinfo, "seconds": {k: round(v, 2) for k, v in secs.items()},
            "backbone": str(bb.path), "backbone_fingerprint": bb.fingerprint,
        }}
        return self

    def _epoch_selector(self, bb, valid, n_examples: int, selection: list):
        """An instruction_tune callback that scores the validation records at every epoch end (selection on
        validation only; the best epoch's trainable weights are kept in memory)."""
        import math

        from llmrec.evaluation.evaluator import evaluate
        from llmrec.llm.tuning import trainable_state

        p = self.params
        per_epoch = max(1, math.ceil(math.ceil(n_examples / p.batch_size) / p.grad_accum))

        def on_step(step: int, loss: float):
            if step % per_epoch or not len(valid):
                return None
            self._bb = bb
            m = evaluate(self, valid, ks=[3, 5, 10], protocol="sampled", progress=False)["metrics"]
            selection.append({"epoch": step // per_epoch, "step": step, "loss": loss,
                              "valid_recall_3_5_10": sum(m[f"Recall@{k}"] for k in (3, 5, 10)),
                              "valid": {k: m[k] for k in ("Recall@3", "Recall@5", "Recall@10", "MRR@10", "TieRate")},
                              "_state": {k: v.clone() for k, v in trainable_state(bb).items()}})
            return None

        return on_step

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        raise UnsupportedOperation("llm_trsr ranks sampled candidates only (one LLM call per candidate): use split.protocol: "
                         "records or split.candidates")

    @torch.no_grad()
    def score_candidates(self, batch: HistoryBatch, candidates: torch.Tensor) -> torch.Tensor:
        from llmrec.llm.scoring import yes_no_scores

        p = self.params
        windows = [self._window(h) for h in batch.histories]
        if p.summary != "none":
            missing = [w for w in windows if self._key(w) not in self.summaries]
            if missing:
                info = self.summarize(missing, progress=False)
                self._eval["summaries_at_eval"] = self._eval.get("summaries_at_eval", 0) + info["histories"]
        bb = self._backbone()
        tok = bb.tokenizer
        t = time.perf_counter()
        prefixes, suffixes = [], []
        for w, cand in zip(windows, candidates.tolist()):
            head, tail = self.prefix_and_tail(w, tok)
            prefixes.append(head)
            suffixes.append([self.item_texts[c] + tail for c in cand])
        kw = {"use_prefix_cache": p.prefix_cache, "batch_size": p.score_batch_size, "progress": False}
        yes, no = p.answers
        if p.score == "softmax":
            out = yes_no_scores(bb, prefixes, suffixes, yes=yes, no=no, mode="softmax", **kw)
        else:  # the paper's Eq. 3: softmax over the two full-vocabulary probabilities = sigmoid(p_yes - p_no)
            py = yes_no_scores(bb, prefixes, suffixes, yes=yes, no=no, mode="yes_prob", **kw)
            pn = yes_no_scores(bb, prefixes, suffixes, yes=no, no=yes, mode="yes_prob", **kw)
            out = [1.0 / (1.0 + np.exp(-(a - b))) for a, b in zip(py, pn)]
        e = self._eval
        e["prompts"] = e.get("prompts", 0) + int(candidates.numel())
        e["users"] = e.get("users", 0) + len(windows)
        e["seconds"] = e.get("seconds", 0.0) + time.perf_counter() - t
        return torch.from_numpy(np.stack(out)).float() if out else torch.zeros(candidates.shape)

    def begin_eval(self, name: str) -> None:
        self._eval = {"set": name}

    def end_eval(self) -> dict:
        e = dict(self._eval)
        if e.get("seconds"):
            e["prompts_per_s"] = round(e["prompts"] / e["seconds"], 3)
        e["prefix_cache"] = self.params.prefix_cache
        e["score"] = self.params.score
        return e

    # -- persistence ------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        from llmrec.llm.tuning import trainable_state

        t = dict(trainable_state(self._backbone()))
        t["__item_texts_json__"] = _blob(self.item_texts)
        t["__summaries_json__"] = _blob(self.summaries)
        return t

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        t = dict(tensors)
        self.item_texts = _unblob(t.pop("__item_texts_json__"))
        self.summaries = _unblob(t.pop("__summaries_json__"))
        self._pending, self._bb = t, None  # the backbone loads on first use

    def extra_config(self) -> dict:
        return dict(self._extra)

    def load_extra_config(self, extra: dict) -> None:
        self._extra = dict(extra)
