"""PALR: Personalization Aware LLMs for Recommendation (Yang, Chen, Jiang et al.; arXiv:2305.07622).

Spec: ../shared/specs/palr-genrec.md Part A. A pipeline over any causal LM (``backbone``: a packaged name such as
``smollm2-135m``, ``tiny-llama`` for tests, or ``/path/to/any/hf/causal-lm``):

1. **Profile** (optional, ``profile: true``; off for Table 2): the *untuned* backbone (adapters disabled) writes a
   few preference keywords from the user's last ``history_len`` items (with genres where the data has them),
   prompt ``palr.profile``; inserted into every ranking prompt as ``palr.profile_line``. Cached on disk.
2. **Retrieval** (v2): any trained llmrec model (``retriever``: a run or model directory whose data fingerprint
   must equal ours; else trained here from ``retriever_config``). Its top ``n_candidates`` (history masked) are
   the candidates, shuffled by a per-user seed (``candidate_order: retriever`` keeps its order).
3. **Ranker**: the backbone instruction-tuned (LoRA by default, ``tuning``) on data built from the *training
   split only*: a seeded ``train_user_frac`` of the users (capped by ``max_train_users``); per user the last
   ``label_len`` training items are the label and the ``history_len`` before them the history; items are randomly
   swapped between history and label (``swap_prob``); short labels are filled from the user's 3-hop affinity
   (``enrich_3hop``, :class:`llmrec.data.graph.ItemGraph`). Task "Recommend" (``palr.recommend``) for v1 and v2;
   "Recommend_Retrieval" (``palr.recommend_retrieval``) for v2: label items + negatives co-occurring with them,
   padded to ``n_candidates`` and shuffled.

Inference (``score``) returns a ranked list of ``list_size`` items per user (``scores_from_lists``: an unlisted
target ranks after every listed item, a miss):

- v2, ``rank_mode: likelihood``: every candidate scored by the mean (``likelihood_reduce``) log-probability of
  ``"item"`` as the first answer line, the prompt encoded once per user (shared-prefix KV cache); top ``list_size``;
- v2, ``rank_mode: generate``: constrained greedy generation of ``list_size`` distinct candidates (prefix trie,
  :class:`llmrec.llm.decoding.ListConstraint`); ``also_generate: true`` runs it beside the likelihood ranking
  and reports its metrics under ``generation.<set>.generate``;
- v1: free generation parsed back to items (ASIN on Amazon data, normalised then fuzzy title on MovieLens);
  invalid, duplicate and history outputs are dropped and counted.

Answers are one quoted item per line (``"a"\\n"b"\\n``), so an item's tokens inside an answer equal its tokens
alone (the constraint trie and the likelihood continuations use exactly those). ``end_eval`` reports the
output counts/rates, the retriever's own metrics and recall@N on the same users, and the predictions rows.
The saved model holds the tuned weights, the item texts, the retriever (config + tensors) and the backbone
reference (fingerprint-checked on load; a tiny backbone is rebuilt from the saved corpus).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from llmrec.llm.generation import GenerationSettings
from llmrec.models.base import HistoryBatch, Params, Recommender
from llmrec.utils.runtime import default_cache_dir, note

_KS = (1, 5, 10, 20)


class PALRParams(Params):
    variant: Literal["v1", "v2"] = Field("v2", description="v1: free generation; v2: re-rank the retriever's candidates")
    backbone: str = Field("smollm2-135m", description="packaged name | tiny-llama | /path/to/hf/causal-lm")
    backbone_overrides: dict = Field(default_factory=dict, description="HF config fields (tiny-*: its size)")
    tiny_vocab: int = Field(1000, ge=64)
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    # items in prompts
    item_text: str = Field("auto", description="auto | asin_title | normalized_title | title | a '{col}' template")
    title_tokens: int | None = Field(12, ge=1, description="titles cut to this many tokens (null: whole titles)")
    domain: Literal["auto", "movies", "products", "items"] = "auto"
    history_len: int = Field(20, ge=1, description="most recent history items in a prompt (paper: 20)")
    list_size: int = Field(10, ge=1, description="items asked for and returned (paper: 10)")
    # retrieval
    retriever: str | None = Field(None, description="run or model directory of a trained llmrec model")
    retriever_config: str | dict | None = Field(None, description="config (path or {model, params, train}) to train "
                                                "the retriever from when `retriever` holds no saved model")
    n_candidates: int = Field(50, ge=1, description="retriever top-N re-ranked at inference (paper: 50)")
    train_candidates: int | None = Field(None, ge=1, description="candidate list size of the Recommend_Retrieval "
                                         "training examples (default: n_candidates, the inference size)")
    candidate_order: Literal["shuffle", "retriever"] = "shuffle"
    # profile
    profile: bool = False
    profile_max_tokens: int = Field(32, ge=1)
    # training data (training split only)
    train_user_frac: float = Field(0.2, gt=0, le=1)
    max_train_users: int | None = Field(None, ge=1)
    label_len: int = Field(10, ge=1)
    enrich_3hop: bool = True
    swap_prob: float = Field(0.2, ge=0, le=1, description="per label item: swap it with a random history item")
    neg_pool_factor: int = Field(3, ge=1)
    tuning: dict = Field(default_factory=dict, description="llmrec.llm.tuning.TuningSettings fields")
    # inference
    rank_mode: Literal["likelihood", "generate"] = "likelihood"
    also_generate: bool = False
    likelihood_reduce: Literal["mean", "sum"] = "mean"
    generation: GenerationSettings = Field(default_factory=GenerationSettings, description="v1 / constrained "
                                           "generation (max_new_tokens is raised to fit list_size items)")
    fuzzy_cutoff: float | None = Field(90.0, ge=0, le=100)
    score_batch_size: int = Field(32, ge=1)
    cache_dir: str | None = Field(None, description="generation / score / adapter cache (default $LLMREC_CACHE)")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        from llmrec.llm.tuning import TuningSettings

        try:
            TuningSettings(**self.tuning)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"tuning: {e}") from None
        if self.variant == "v2" and self.retriever is None and self.retriever_config is None:
            raise ValueError("variant v2 needs `retriever` (a run dir) or `retriever_config`")
        return self


def _sha(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PALR(Recommender):
    name = "palr"
    Params = PALRParams

    def __init__(self, params=None, **kw):
        super().__init__(params, **kw)
        self.bb = None  # llmrec.llm.backbones.Backbone (tuned in place)
        self.texts: list[str] = []
        self.item_info: dict = {}
        self.genres: list[str] | None = None
        self.retriever = None
        self._retriever_src: str | None = None
        self._eval_sets: dict = {}
        self._corpus: list[str] | None = None
        self._tuned = False
        self.fit_info: dict = {}
        self._ev: dict | None = None

    # -- pieces -------------------------------------------------------------------------------------
    @property
    def tuning(self):
        from llmrec.llm.tuning import TuningSettings

        return TuningSettings(**self.params.tuning)

    def _cache(self) -> Path:
        return Path(self.params.cache_dir) if self.params.cache_dir else default_cache_dir()

    def _log(self, msg: str) -> None:
        note("palr", msg)

    def _load_backbone(self, corpus: list[str] | None) -> None:
        from llmrec.llm.backbones import load_backbone

        p = self.params
        self.bb = load_backbone(p.backbone, head=True, texts=corpus, overrides=p.backbone_overrides, device=p.device,
                                dtype=p.dtype, trust_remote_code=p.trust_remote_code, seed=p.seed,
                                tiny_vocab=p.tiny_vocab, expect_kind="causal")

    def _vocab(self) -> dict:
        from llmrec.llm.prompts import PALR_DOMAINS

        return PALR_DOMAINS[self._domain]

    def _quoted(self, items) -> str:
        from llmrec.llm.itemtext import quoted_list

        return quoted_list([self.texts[int(i)] for i in items])

    def _prompt(self, task: str, history, candidates=None, profile: str | None = None) -> str:
        from llmrec.llm.prompts import get_template

        p = self.params
        prof = get_template("palr.profile_line").render(profile=profile) if profile else ""
        fields = dict(n=p.list_size, profile=prof, history=self._quoted(history[-p.history_len:]), **self._vocab())
        if task == "recommend_retrieval":
            fields["candidates"] = self._quoted(candidates)
        return get_template(f"palr.{task}").render(**fields)

    def _answer(self, items) -> str:
        return "".join(f'"{self.texts[int(i)]}"\n' for i in items)

    def _gen_settings(self, max_new: int | None = None) -> GenerationSettings:
        t = self.tuning
        upd = {"chat": t.chat, "system": t.system}
        if max_new is not None:
            upd["max_new_tokens"] = max(self.params.generation.max_new_tokens, max_new)
        return self.params.generation.model_copy(update=upd)

    def _model_key(self) -> str:
        return self.bb.info.get("trainable_hash") or "untuned"

    # -- fit ------------------------------------------------------------------------------------------
    def fit(self, split, cfg=None, run_dir=None, resume: bool = False, progress: bool = True, **kw) -> PALR:
        from llmrec.data.graph import ItemGraph
        from llmrec.llm.itemtext import render_items
        from llmrec.llm.prompts import TEMPLATES

        p, secs = self.params, {}
        ds = split.dataset
        self.n_items, self.n_users = ds.n_items, ds.n_users
        self._eval_sets = {es.name: es for es in (split.valid, split.test)}
        self._progress = progress
        self._domain = self._pick_domain(ds)
        from llmrec.llm.retriever import check_retriever_source, model_dir_of

        want_retriever = p.variant == "v2" or bool(p.retriever or p.retriever_config)
        if want_retriever:
            check_retriever_source(p.retriever, p.retriever_config)  # before tuning, not after
        if want_retriever and p.retriever and model_dir_of(p.retriever) is not None:
            self._resolve_retriever(split, cfg, run_dir, progress, secs)  # a saved one: load and check it first
        t = time.perf_counter()
        raw = ds.raw_item_texts()
        self._corpus = (raw + [tt.user for k, tt in TEMPLATES.items() if k.startswith("palr.")]) if self._is_tiny() else None
        self._load_backbone(self._corpus)
        it = render_items(ds, p.item_text, self.bb.tokenizer, p.title_tokens)
        self.texts, self.item_info = it.texts, it.info
        self.genres = [str(g or "").replace("|", ", ") for g in ds.item_text["genres"].to_list()] \
            if "genres" in ds.text_columns() and ds.item_text.height == ds.n_items else None
        secs["load_backbone_and_items"] = time.perf_counter() - t
        t = time.perf_counter()
        examples, dinfo = self.build_examples(split.train, ItemGraph(split.train, ds.n_items))
        secs["build_examples"] = time.perf_counter() - t
        if p.profile:
            t = time.perf_counter()
            profs = self.profiles([e["history"] for e in examples], desc="profiles (train)")
            for e, pr in zip(examples, profs):
                e["profile"] = pr
            secs["profiles_train"] = time.perf_counter() - t
        t = time.perf_counter()
        tinfo = self._tune(examples, run_dir, resume, progress)
        secs["tuning"] = time.perf_counter() - t
        if want_retriever and self.retriever is None:  # trained from its config (or finished meanwhile)
            self._resolve_retriever(split, cfg, run_dir, progress, secs)
        self.fit_info.update({"palr": {"data": dinfo, "items": self.item_info, "tuning": tinfo, "seconds": secs,
                                       "domain": self._domain, "backbone": str(self.bb.path),
                                       "backbone_fingerprint": self.bb.fingerprint}})
        return self

    def _resolve_retriever(self, split, cfg, run_dir, progress, secs) -> None:
        from llmrec.llm.retriever import resolve_retriever

        p = self.params
        out = Path(run_dir) / "retriever" if run_dir else None
        self.retriever, rinfo = resolve_retriever(p.retriever, p.retriever_config, split, self.data_fingerprint, out,
                                                  run_cfg=cfg, progress=progress)
        self._retriever_src = p.retriever if rinfo["source"] == "loaded" else str(out) if out else None
        secs["retriever"] = rinfo["seconds"]
        self.fit_info["retriever"] = rinfo

    def _is_tiny(self) -> bool:
        from llmrec.llm.tiny import is_tiny

        return is_tiny(self.params.backbone)

    def _pick_domain(self, ds) -> str:
        d = self.params.domain
        if d != "auto":
            return d
        if ds.name.startswith("ml-"):
            return "movies"
        return "products" if "asin" in ds.text_columns() else "items"

    def build_examples(self, train: list[np.ndarray], graph) -> tuple[list[dict], dict]:
        """Instruction examples from the training sequences (see the module docstring)."""
        p = self.params
        rng = np.random.default_rng(p.seed)
        eligible = np.array([u for u, s in enumerate(train) if len(s) >= 2], dtype=np.int64)
        n_users = max(1, round(p.train_user_frac * len(eligible)))
        users = rng.permutation(eligible)[:n_users]
        if p.max_train_users is not None:
            users = users[: p.max_train_users]
        tasks = ["recommend"] + (["recommend_retrieval"] if p.variant == "v2" else [])
        out, c = [], {"users": len(users), "eligible_users": len(eligible), "swapped": 0, "enriched_items": 0,
                      "enriched_examples": 0, "padded_negatives": 0, "label_items": 0, "history_items": 0}
        for u in users:
            s = np.asarray(train[u], dtype=np.int64)
            r = np.random.default_rng([p.seed, int(u)])
            n_lab = max(1, min(p.label_len, len(s) // 2))
            hist, lab = list(s[: len(s) - n_lab][-p.history_len:]), list(s[len(s) - n_lab:])
            for j in range(len(lab)):  # random swap between the instruction and the label
                if r.random() < p.swap_prob:
                    k = int(r.integers(len(hist)))
                    hist[k], lab[j] = lab[j], hist[k]
                    c["swapped"] += 1
            if p.enrich_3hop and len(lab) < p.label_len:
                extra = graph.top_related(s, p.label_len - len(lab), exclude=list(s))
                c["enriched_items"] += len(extra)
                c["enriched_examples"] += bool(extra)
                lab += extra
            c["label_items"] += len(lab)
            c["history_items"] += len(hist)
            for task in tasks:
                e = {"user": int(u), "task": task, "history": hist, "label": lab[: p.list_size]}
                if task == "recommend_retrieval":
                    want = max(0, (p.train_candidates or p.n_candidates) - len(e["label"]))
                    neg, pad = graph.similar_negatives(e["label"], want, exclude=list(s) + hist, rng=r,
                                                       pool_factor=p.neg_pool_factor)
                    c["padded_negatives"] += pad
                    cands = np.array(e["label"] + neg)
                    e["candidates"] = [int(x) for x in r.permutation(cands)]
                out.append(e)
        c["examples"] = len(out)
        c["per_task"] = {t: sum(e["task"] == t for e in out) for t in tasks}
        return out, c

    def _tune(self, examples: list[dict], run_dir, resume: bool, progress: bool) -> dict:
        from safetensors.torch import load_file, save_file

        from llmrec.llm.lora import apply_lora
        from llmrec.llm.tuning import (
            SFTExample,
            instruction_tune,
            load_trainable_state,
            trainable_state,
        )

        sft = [SFTExample(self._prompt(e["task"], e["history"], e.get("candidates"), e.get("profile")),
                          self._answer(e["label"])) for e in examples]
        s = self.tuning
        key = _sha("palr-tuned", self.bb.fingerprint, s.model_dump(mode="json"), [(x.prompt, x.response) for x in sft])
        f = self._cache() / "palr-tuned" / key / "trainable.safetensors"
        if f.exists():
            if s.method == "lora":
                torch.manual_seed(s.seed)
                self.bb.model = apply_lora(self.bb.model, s.lora)
            load_trainable_state(self.bb, load_file(str(f)))
            self._tuned = True
            info = json.loads((f.parent / "info.json").read_text())
            self._log(f"read the tuned weights from the cache {f.parent}")
            return {**info, "from_cache": str(f.parent)}
        info = instruction_tune(self.bb, sft, s, run_dir=run_dir, resume=resume, progress=progress)
        self._tuned = True
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in trainable_state(self.bb).items()}, str(tmp))
        (f.parent / "info.json").write_text(json.dumps({k: v for k, v in info.items() if k != "losses"}))
        tmp.replace(f)
        info = {k: v for k, v in info.items() if k != "losses"}
        info["prompt_chars_mean"] = float(np.mean([len(x.prompt) for x in sft]))
        return info

    # -- profile ------------------------------------------------------------------------------------
    def profiles(self, histories: list, desc: str = "profiles") -> list[str]:
        """Preference keywords per history from the untuned backbone (cached)."""
        from llmrec.llm.generation import generate
        from llmrec.llm.prompts import get_template

        p, tmpl = self.params, get_template("palr.profile")
        lines = []
        for h in histories:
            h = [int(i) for i in h][-p.history_len:]
            g = self.genres
            lines.append(tmpl.render(history="\n".join(f"- {self.texts[i]}" + (f" [{g[i]}]" if g and g[i] else "") for i in h),
                                     **self._vocab()))
        peft = hasattr(self.bb.model, "disable_adapter")
        ctx = self.bb.model.disable_adapter() if peft else _nullctx()
        if self._tuned and not peft:
            raise ValueError("profile: true with tuning method 'full' needs the untuned model; use method 'lora'")
        settings = self._gen_settings().model_copy(update={"max_new_tokens": p.profile_max_tokens})
        with ctx:
            res = generate(self.bb, lines, settings, cache_dir=self._cache(), template_key=tmpl.key(), model_key="untuned",
                           progress=getattr(self, "_progress", True), desc=desc)
        self._last_profile_stats = res.stats()
        return [(t.strip().splitlines() or [""])[0][:300] for t in res.texts]

    # -- scoring ------------------------------------------------------------------------------------
    def _order(self, user: int, cands: np.ndarray) -> list[int]:
        if self.params.candidate_order == "retriever":
            return [int(c) for c in cands]
        return [int(c) for c in np.random.default_rng([self.params.seed, 7, int(user)]).permutation(cands)]

    def _item_tokens(self, i: int) -> list[int]:
        return self.bb.tokenizer(f'"{self.texts[i]}"', add_special_tokens=False)["input_ids"]

    def rank_likelihood(self, prompts: list[str], cands: list[list[int]]) -> list[list[int]]:
        from llmrec.llm.prompts import as_model_input
        from llmrec.llm.scoring import continuation_logprobs
        from llmrec.utils.io import atomic_write_json

        p, t = self.params, self.tuning
        prefixes = [as_model_input(self.bb.tokenizer, x, system=t.system, chat=t.chat) for x in prompts]
        conts = [[f'"{self.texts[c]}"\n' for c in row] for row in cands]
        keys = [_sha(self.bb.fingerprint, self._model_key(), p.likelihood_reduce, pre, co) for pre, co in zip(prefixes, conts)]
        d = self._cache() / "palr-scores"
        got: dict[int, list[float]] = {}
        for r, k in enumerate(keys):
            if (d / f"{k}.json").exists():
                got[r] = json.loads((d / f"{k}.json").read_text())
        todo = [r for r in range(len(prompts)) if r not in got]
        for s in range(0, len(todo), 8):  # small chunks: a killed run resumes where it stopped
            rows = todo[s: s + 8]
            lp = continuation_logprobs(self.bb, [prefixes[r] for r in rows], [conts[r] for r in rows],
                                       reduce=p.likelihood_reduce, batch_size=p.score_batch_size, progress=False)
            for r, v in zip(rows, lp):
                got[r] = [float(x) for x in np.asarray(v)]
                atomic_write_json(d / f"{keys[r]}.json", got[r])
            self._log(f"likelihood ranking: {min(s + 8, len(todo))}/{len(todo)} users scored "
                      f"({len(prompts) - len(todo)} read from the cache)")
        self._ev.extra["likelihood_rows_from_cache"].append(len(prompts) - len(todo))
        out = []
        for r, row in enumerate(cands):
            order = np.argsort(-np.asarray(got[r]), kind="stable")[: p.list_size]
            out.append([row[i] for i in order])
        return out

    def rank_generate(self, prompts: list[str], cands: list[list[int]]) -> tuple[list[list[int]], list[str]]:
        from llmrec.llm.decoding import ListConstraint
        from llmrec.llm.generation import generate
        from llmrec.llm.prompts import get_template

        p, tok = self.params, self.bb.tokenizer
        sep = tok("\n", add_special_tokens=False)["input_ids"]
        cons, longest = [], 1
        for row in cands:
            seqs = [self._item_tokens(c) for c in row]
            longest = max([longest] + [len(x) for x in seqs])
            cons.append(ListConstraint(seqs, row, sep, [tok.eos_token_id], p.list_size))
        res = generate(self.bb, prompts, self._gen_settings(p.list_size * (longest + len(sep)) + 2),
                       cache_dir=self._cache(), template_key=get_template("palr.recommend_retrieval").key(),
                       keys=[",".join(map(str, row)) for row in cands], constraints=cons, model_key=self._model_key(),
                       progress=getattr(self, "_progress", True), desc="constrained generation")
        self._ev.extra["generation_stats"].append(res.stats())
        return [c.parse(ids) for c, ids in zip(cons, res.token_ids)], res.texts

    def generate_free(self, prompts: list[str]) -> list[str]:
        from llmrec.llm.generation import generate
        from llmrec.llm.prompts import get_template

        longest = max(len(self._item_tokens(i)) for i in range(0, self.n_items, max(1, self.n_items // 200)))
        res = generate(self.bb, prompts, self._gen_settings(self.params.list_size * (longest + 2) + 2),
                       cache_dir=self._cache(), template_key=get_template("palr.recommend").key(),
                       model_key=self._model_key(), progress=getattr(self, "_progress", True), desc="generation (v1)")
        self._ev.extra["generation_stats"].append(res.stats())
        return res.texts

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        from llmrec.evaluation.evaluator import scores_from_lists
        from llmrec.llm.itemtext import ItemMatcher, clean_list, parse_items

        p = self.params
        if self.bb is None:
            raise RuntimeError("PALR: not fitted or loaded")
        if self._ev is None:
            self.begin_eval("adhoc")
        ev, B = self._ev, len(batch)
        hists = [np.asarray(h, dtype=np.int64) for h in batch.histories]
        t = time.perf_counter()
        cands, rscores = (None, None)
        if self.retriever is not None:
            from llmrec.llm.retriever import retrieve

            cands, rscores = retrieve(self.retriever, batch, p.n_candidates)
        ev.seconds["retrieve"] += time.perf_counter() - t
        t = time.perf_counter()
        profs = self.profiles(hists, desc="profiles (eval)") if p.profile else [None] * B
        ev.seconds["profile"] += time.perf_counter() - t
        t = time.perf_counter()
        raw: list[str] = [""] * B
        alt = None
        if p.variant == "v2":
            ordered = [self._order(u, c) for u, c in zip(batch.users, cands)]
            prompts = [self._prompt("recommend_retrieval", h, o, pr) for h, o, pr in zip(hists, ordered, profs)]
            if p.rank_mode == "likelihood":
                lists = self.rank_likelihood(prompts, ordered)
                ev.seconds["rank_likelihood"] += time.perf_counter() - t
                if p.also_generate:
                    t = time.perf_counter()
                    alt, raw = self.rank_generate(prompts, ordered)
                    ev.seconds["rank_generate"] += time.perf_counter() - t
                    for lst, h, o in zip(alt, hists, ordered):
                        ev.count(clean_list(lst, h, o, limit=p.list_size)[1], "generate")
            else:
                lists, raw = self.rank_generate(prompts, ordered)
                ev.seconds["rank_generate"] += time.perf_counter() - t
            for lst, h, o in zip(lists, hists, ordered):
                ev.count(clean_list(lst, h, o, limit=p.list_size)[1])
        else:
            prompts = [self._prompt("recommend", h, profile=pr) for h, pr in zip(hists, profs)]
            raw = self.generate_free(prompts)
            matcher = ItemMatcher(self._item_texts_obj(), fuzzy_cutoff=p.fuzzy_cutoff)
            lists = []
            for text, h in zip(raw, hists):
                lst, c = clean_list([i for _, i in parse_items(text, matcher)], h, limit=p.list_size)
                lists.append(lst)
                ev.count(c)
            ev.seconds["generate_v1"] += time.perf_counter() - t
        rows = [{"user": int(u), "items": [int(i) for i in lists[r]], "raw": raw[r] or "",
                 **({"candidates": [int(c) for c in cands[r]]} if cands is not None else {}),
                 **({"generated_items": [int(i) for i in alt[r]]} if alt is not None else {})}
                for r, u in enumerate(batch.users)]
        named = {"ranker": lists, **({"generate": alt} if alt is not None else {})}
        ev.add(batch, self.n_items, lists=named, scores={"retriever": rscores} if rscores is not None else None,
               candidates=cands, rows=rows)
        return scores_from_lists(lists, self.n_items)

    def _item_texts_obj(self):
        from llmrec.llm.itemtext import ItemTexts

        ids = [t.split(" ", 1)[0] for t in self.texts] if self.item_info.get("style") == "asin_title" else None
        return ItemTexts(texts=self.texts, style=self.item_info.get("style", "title"), titles=self.texts, ids=ids)

    # -- evaluation hooks -----------------------------------------------------------------------------
    def begin_eval(self, name: str) -> None:
        from llmrec.llm.listeval import ListEvalLog

        self._ev = ListEvalLog.for_eval_set(name, self._eval_sets.get(name), _KS)

    def end_eval(self) -> dict:
        ev, self._ev = self._ev, None
        if ev is None:
            return {}
        p = self.params
        return ev.report(variant=p.variant, rank_mode=p.rank_mode if p.variant == "v2" else "free_generation",
                         profile=p.profile, n_candidates=p.n_candidates if self.retriever is not None else None)

    # -- persistence ----------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        from llmrec.llm.tuning import trainable_state

        out = {f"ranker.{k}": v for k, v in trainable_state(self.bb).items()} if self._tuned else {}
        if self.retriever is not None:
            seen = set()
            for k, v in self.retriever.state_tensors().items():
                out[f"retriever.{k}"] = v.clone() if v.data_ptr() in seen else v
                seen.add(v.data_ptr())
        return out

    def extra_config(self) -> dict:
        r = self.retriever
        return {"texts": self.texts, "item_info": self.item_info, "genres": self.genres, "domain": self._domain,
                "corpus": self._corpus, "backbone_fingerprint": self.bb.fingerprint if self.bb else None,
                "tuned": self._tuned, "retriever_source": self._retriever_src,
                "retriever": None if r is None else {"model": r.name, "params": r.params.model_dump(), "n_items": r.n_items,
                                                     "n_users": r.n_users, "extra": r.extra_config(),
                                                     "data_fingerprint": r.data_fingerprint}}

    def load_extra_config(self, extra: dict) -> None:
        self._extra = extra
        self.texts, self.item_info, self.genres = extra["texts"], extra["item_info"], extra.get("genres")
        self._domain, self._corpus, self._tuned = extra["domain"], extra.get("corpus"), False
        self._retriever_src = extra.get("retriever_source")

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        from llmrec.llm.backbones import BackboneError
        from llmrec.llm.lora import apply_lora
        from llmrec.llm.tuning import load_trainable_state
        from llmrec.models import get_model_class

        ex = self._extra
        self._load_backbone(self._corpus)
        if ex.get("backbone_fingerprint") and self.bb.fingerprint != ex["backbone_fingerprint"]:
            raise BackboneError(f"PALR: backbone {self.params.backbone!r} now has fingerprint {self.bb.fingerprint}, but "
                                f"the model was tuned on {ex['backbone_fingerprint']}; load it with the same base model")
        ranker = {k[len("ranker."):]: v for k, v in tensors.items() if k.startswith("ranker.")}
        if ex.get("tuned"):
            if self.tuning.method == "lora":
                self.bb.model = apply_lora(self.bb.model, self.tuning.lora)
            load_trainable_state(self.bb, ranker)
            self.bb.model.eval()
            self._tuned = True
        rc = ex.get("retriever")
        if rc:
            r = get_model_class(rc["model"])(rc["params"])
            r.n_items, r.n_users, r.data_fingerprint = rc["n_items"], rc["n_users"], rc.get("data_fingerprint")
            r.load_extra_config(rc.get("extra", {}))
            r.load_state_tensors({k[len("retriever."):]: v for k, v in tensors.items() if k.startswith("retriever.")})
            self.retriever = r


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
