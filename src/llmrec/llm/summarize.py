"""User-history summaries over the generation stage: LLM-TRSR's hierarchical and recurrent summarizers.

A history is a chronological list of item texts. It is cut into **blocks** of ``block_size`` items from the
oldest (the last block may be partial), then:

- :func:`hierarchical` (LLM-TRSR §4.1, Fig. 2): every block is summarised on its own (the ``block`` prompt),
  then the block summaries are merged (the ``merge`` prompt) into one. ``fan_in`` bounds how many summaries one
  merge prompt takes: with more, consecutive groups of ``fan_in`` are merged first and the merged summaries
  merged again, level by level (the paper's "more layers"; a group of one passes through). With the paper's
  2-5 blocks and ``fan_in`` 5 this is the official code's two levels. A one-block history's summary is its
  block summary.
- :func:`recurrent` (§4.2, Fig. 5): summary_1 = LLM(block_1) with the ``block`` prompt, then
  summary_k = LLM(summary_(k-1), block_k) with the ``update`` prompt, to the last block.

Every level / step is one batched :func:`llmrec.llm.generation.generate` call over all histories (identical
prompts once), so outputs are cached on disk and a killed run resumes; a rerun reads everything back
(``info["n_generated"] == 0``). An empty history gets the empty summary. PALR-style profiles can reuse this
with their own templates (:class:`SummaryPrompts` names registered :mod:`llmrec.llm.prompts` templates).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from llmrec.llm.prompts import get_template, uses_chat


@dataclass(frozen=True)
class SummaryPrompts:
    """Which templates to use and how lists are laid out in them.

    ``block`` renders ``{items}``; ``merge`` renders ``{summaries}``; ``update`` renders ``{summary}`` and ``{items}``.
    ``items``: ``numbered`` ("1. text" lines, the paper's figures) or ``plain`` (one line each, the code).
    ``summaries``: ``numbered`` ("1. summary", blank line between, Fig. 4) or ``bracketed`` (the code's
    ``'[Preference Summary j:\\n]' + summary`` lines). ``roles``: wrap a plain-text prompt in
    ``### User:`` / ``### Assistant:`` (not when the model's chat template is used)."""

    block: str
    merge: str = ""
    update: str = ""
    items: Literal["numbered", "plain"] = "numbered"
    summaries: Literal["numbered", "bracketed"] = "numbered"
    roles: bool = True

    def key(self, role: str) -> str:
        return f"{get_template(getattr(self, role)).key()}|items={self.items}|summaries={self.summaries}|roles={self.roles}"


@dataclass
class SummaryResult:
    summaries: list[str]
    info: dict = field(default_factory=dict)


def blocks_of(items: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive chunks of ``size`` from the oldest item (the last may be partial)."""
    if size < 1:
        raise ValueError("block_size must be >= 1")
    items = list(items)
    return [items[i: i + size] for i in range(0, len(items), size)]


def format_items(items: Sequence[str], style: str) -> str:
    if style == "numbered":
        return "\n".join(f"{j}. {t}" for j, t in enumerate(items, 1))
    return "\n".join(items)


def format_summaries(summaries: Sequence[str], style: str) -> str:
    if style == "bracketed":
        return "\n".join(f"[Preference Summary {j}:\n]" + s for j, s in enumerate(summaries, 1))
    return "\n\n".join(f"{j}. {s}" for j, s in enumerate(summaries, 1))


def turn(body: str, chat_used: bool, roles: bool = True) -> str:
    """The user text a plain-text model reads: the paper's role markers around ``body`` (none with a chat template)."""
    if roles and not chat_used:
        return f"### User:\n{body}\n### Assistant:\n"
    return body


class _Stage:
    """One batched generation call per level/step, with counts."""

    def __init__(self, backbone, settings, cache_dir, progress: bool, prompts: SummaryPrompts, desc: str):
        from llmrec.llm.generation import GenerationSettings

        self.bb, self.cache_dir, self.progress, self.p, self.desc = backbone, cache_dir, progress, prompts, desc
        self.settings = settings if isinstance(settings, GenerationSettings) else GenerationSettings(**(settings or {}))
        self.chat = uses_chat(backbone.tokenizer, self.settings.chat)
        self.info: dict = {"calls": [], "n_prompts": 0, "n_cached": 0, "n_generated": 0, "n_truncated": 0,
                           "generated_tokens": 0, "prompt_tokens": 0, "empty_outputs": 0}

    def __call__(self, role: str, bodies: list[str], label: str) -> list[str]:
        from llmrec.llm.generation import generate

        if not bodies:
            return []
        texts = [turn(b, self.chat, self.p.roles) for b in bodies]
        r = generate(self.bb, texts, self.settings, cache_dir=self.cache_dir, template_key=self.p.key(role),
                     progress=self.progress, desc=f"{self.desc} {label}")
        st = r.stats()
        self.info["calls"].append({"stage": label, **st})
        for k in ("n_prompts", "n_cached", "n_generated", "n_truncated", "generated_tokens", "prompt_tokens"):
            self.info[k] += st[k]
        self.info["empty_outputs"] += sum(1 for t in r.texts if not t.strip())
        return r.texts


def hierarchical(backbone, histories: Sequence[Sequence[str]], prompts: SummaryPrompts, settings=None, *,
                 block_size: int = 5, fan_in: int = 5, cache_dir=None, progress: bool = True) -> SummaryResult:
    """One summary per history: block summaries merged ``fan_in`` at a time, level by level."""
    if fan_in < 2:
        raise ValueError("fan_in must be >= 2")
    t0 = time.perf_counter()
    stage = _Stage(backbone, settings, cache_dir, progress, prompts, "summaries (hierarchical)")
    tb = get_template(prompts.block)
    tm = get_template(prompts.merge)
    blocks = [blocks_of(h, block_size) for h in histories]
    flat = [(r, b) for r, bl in enumerate(blocks) for b in bl]
    outs = stage("block", [tb.render(items=format_items(b, prompts.items)) for _, b in flat], "level 1 (blocks)")
    current: list[list[str]] = [[] for _ in histories]
    for (r, _), s in zip(flat, outs):
        current[r].append(s)
    level = 1
    while any(len(c) > 1 for c in current):
        level += 1
        jobs: list[tuple[int, int, list[str]]] = []  # (record, group index, summaries to merge)
        nxt: list[list[str | None]] = []
        for r, c in enumerate(current):
            if len(c) <= 1:
                nxt.append(list(c))
                continue
            groups = [c[i: i + fan_in] for i in range(0, len(c), fan_in)]
            row: list[str | None] = []
            for g in groups:
                if len(g) == 1:
                    row.append(g[0])
                else:
                    jobs.append((r, len(row), g))
                    row.append(None)
            nxt.append(row)
        merged = stage("merge", [tm.render(summaries=format_summaries(g, prompts.summaries)) for _, _, g in jobs],
                       f"level {level} (merge)")
        for (r, j, _), s in zip(jobs, merged):
            nxt[r][j] = s
        current = nxt  # type: ignore[assignment]
    info = {**stage.info, "mode": "hierarchical", "levels": level, "block_size": block_size, "fan_in": fan_in,
            "seconds": time.perf_counter() - t0}
    return SummaryResult([c[0] if c else "" for c in current], info)


def recurrent(backbone, histories: Sequence[Sequence[str]], prompts: SummaryPrompts, settings=None, *,
              block_size: int = 5, cache_dir=None, progress: bool = True) -> SummaryResult:
    """One summary per history: summary_k = LLM(summary_(k-1), block_k), batched across histories per step."""
    t0 = time.perf_counter()
    stage = _Stage(backbone, settings, cache_dir, progress, prompts, "summaries (recurrent)")
    tb = get_template(prompts.block)
    tu = get_template(prompts.update)
    blocks = [blocks_of(h, block_size) for h in histories]
    summaries = [""] * len(histories)
    first = [r for r, bl in enumerate(blocks) if bl]
    for r, s in zip(first, stage("block", [tb.render(items=format_items(blocks[r][0], prompts.items)) for r in first],
                                 "step 1 (first block)")):
        summaries[r] = s
    steps = max((len(b) for b in blocks), default=0)
    for k in range(1, steps):
        rows = [r for r, bl in enumerate(blocks) if len(bl) > k]
        bodies = [tu.render(summary=summaries[r], items=format_items(blocks[r][k], prompts.items)) for r in rows]
        for r, s in zip(rows, stage("update", bodies, f"step {k + 1} (update)")):
            summaries[r] = s
    info = {**stage.info, "mode": "recurrent", "steps": steps, "block_size": block_size,
            "seconds": time.perf_counter() - t0}
    return SummaryResult(summaries, info)
