"""Named, versioned prompt templates: every prompt an LLM system of llmrec sends lives here, once.

A :class:`PromptTemplate` is a name, a version, an optional system message and a ``str.format`` body. Its
:meth:`~PromptTemplate.key` (``name@vN:<hash of the text>``) goes into every generation-cache key, so editing a
template's text without bumping the version still never reuses stale outputs.

:func:`as_model_input` turns the rendered user text into what the backbone reads: the tokenizer's chat
template when it has one (``chat=None`` = auto), plain text otherwise. Generation
(:mod:`llmrec.llm.generation`), instruction tuning (:mod:`llmrec.llm.tuning`) and scoring
(:mod:`llmrec.llm.scoring`) all go through it, so a prompt looks the same to the model in all three.

Systems register their templates at import time of this module (below), grouped by system.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    user: str  # str.format body
    system: str | None = None
    response: str | None = None  # optional str.format body of the expected answer (instruction tuning)
    note: str = ""

    def fields(self) -> list[str]:
        out = []
        for body in (self.user, self.response or ""):
            out += [f for _, f, _, _ in string.Formatter().parse(body) if f and f not in out]
        return out

    def render(self, **fields) -> str:
        try:
            return self.user.format(**fields)
        except KeyError as e:
            raise PromptError(f"prompt {self.name!r} needs field {e.args[0]!r}") from None

    def render_response(self, **fields) -> str:
        if self.response is None:
            raise PromptError(f"prompt {self.name!r} has no response template")
        try:
            return self.response.format(**fields)
        except KeyError as e:
            raise PromptError(f"prompt {self.name!r} response needs field {e.args[0]!r}") from None

    def key(self) -> str:
        h = hashlib.sha256(f"{self.system}\x00{self.user}\x00{self.response}".encode()).hexdigest()[:10]
        return f"{self.name}@v{self.version}:{h}"


TEMPLATES: dict[str, PromptTemplate] = {}


def register(t: PromptTemplate) -> PromptTemplate:
    if t.name in TEMPLATES and TEMPLATES[t.name] != t:
        raise PromptError(f"prompt {t.name!r} registered twice with different text")
    TEMPLATES[t.name] = t
    return t


def get_template(name: str) -> PromptTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise PromptError(f"unknown prompt template {name!r}; available: {', '.join(sorted(TEMPLATES))}") from None


def uses_chat(tokenizer, chat: bool | None = None) -> bool:
    """``chat=None``: use the chat template when the tokenizer has one."""
    has = getattr(tokenizer, "chat_template", None) is not None
    if chat is None:
        return has
    if chat and not has:
        raise PromptError("chat=True but the tokenizer has no chat template")
    return bool(chat)


def as_model_input(tokenizer, user_text: str, *, system: str | None = None, chat: bool | None = None) -> str:
    """The exact string the model reads before its answer starts (generation prompt included)."""
    if uses_chat(tokenizer, chat):
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return (system + "\n\n" if system else "") + user_text


def answer_suffix(tokenizer, chat: bool | None = None) -> str:
    """What closes an answer in training data: the chat template's end-of-turn, else the EOS token."""
    eos = tokenizer.eos_token or ""
    return eos


# ----------------------------------------------------------------------------------------------------
# PALR (seed 000; ../shared/specs/palr-genrec.md Part A). The task instructions are the paper's verbatim.

register(PromptTemplate(
    name="palr.profile", version=1,
    user=("A user {verb} these {kind}, oldest first:\n{history}\n"
          "Describe this user's preferences in a few keywords (genres, categories, brands, styles), comma-separated."),
    note="PALR stage 1: natural-language profile keywords (the paper's prompt is only in its Figure 2 image)",
))
register(PromptTemplate(
    name="palr.recommend", version=1,
    user="Task Instruction: Recommend {n} other {kind} based on user's {hist_word} history.\n"
         "Input: {profile}User {verb} {kind} {history}.",
    response="{items}",
    note="PALR 'Recommend' (v1): free generation of the next items",
))
register(PromptTemplate(
    name="palr.recommend_retrieval", version=1,
    user="Task Instruction: Recommend {n} other {kind} based on user's {hist_word} history from the candidate list.\n"
         "Input: {profile}User {verb} {kind} {history}. The candidates are {candidates}.",
    response="{items}",
    note="PALR 'Recommend_Retrieval' (v2): select the next items from the candidates",
))
