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


# ----------------------------------------------------------------------------------------------------
# PALR (seed 000; ../shared/specs/palr-genrec.md Part A; llmrec.models.palr). The task instructions are the
# paper's wording; {kind} / {history_name} / {history_lead} come from PALR_DOMAINS (the paper's ML-1M and Beauty
# examples). Items are quoted texts ("ASIN (title)" / normalised titles); the answer is one quoted item per line.

PALR_DOMAINS: dict[str, dict[str, str]] = {
    "movies": {"kind": "movies", "history_name": "user's watching history", "history_lead": "User watched movies",
               "verb": "watched"},
    "products": {"kind": "items", "history_name": "user's history",
                 "history_lead": "User has purchased the following products", "verb": "purchased"},
    "items": {"kind": "items", "history_name": "user's history", "history_lead": "User interacted with items",
              "verb": "interacted with"},
}

register(PromptTemplate(
    name="palr.profile", version=2,
    user=("A user {verb} these {kind}, oldest first:\n{history}\n"
          "Describe this user's preferences in a few keywords (genres, categories, brands, styles), comma-separated."),
    note="PALR stage 1: natural-language profile keywords (the paper's prompt is only in its Figure 2 image); "
         "fields from PALR_DOMAINS (verb, kind) + history lines",
))
register(PromptTemplate(
    name="palr.profile_line", version=1,
    user="User profile: {profile}\n",
    note="PALR: the profile as it appears inside a ranking prompt (the {profile} field below)",
))
register(PromptTemplate(
    name="palr.recommend", version=2,
    user="Task Instruction: Recommend {n} other {kind} based on {history_name}.\n"
         "Input: {profile}{history_lead} {history}.",
    response="{items}",
    note="PALR 'Recommend' (v1 and v2 training; v1 inference): free generation of the next items",
))
register(PromptTemplate(
    name="palr.recommend_retrieval", version=2,
    user="Task Instruction: Recommend {n} other {kind} based on {history_name} from the candidate list.\n"
         "Input: {profile}{history_lead} {history}. The candidates are {candidates}.",
    response="{items}",
    note="PALR 'Recommend_Retrieval' (v2): select the next items from the candidates",
))


# ----------------------------------------------------------------------------------------------------
# LLM-TRSR (seed 002; ../shared/specs/llm-trsr-hnvm.md Part A). Two presets x two domains. The bodies carry no
# role markers: llmrec.llm.summarize.turn() adds the paper's "### User:\n ... \n### Assistant:\n" when the model
# reads plain text, and a chat template replaces them when the summarizer has one.
# paper: the figures' wording (Fig. 3 block, Fig. 4 merge, Fig. 6 news block, Fig. 7 news update, Fig. 8 shopping
#   recommendation; numbered item lines). The figures show no shopping update and no news recommendation prompt:
#   those two use the official code's instruction text in the figures' layout.
# code: the strings of zhengzhi-1997/LLM-TRSR (summary_generation.py, train/validate/test.py), unnumbered item lines,
#   the merge list as the code builds it ('[Preference Summary j:\n]' + summary, bracket misplaced as in the code).

_TRSR_MERGE = ("Given a series of user preferences summaries arranged in chronological order, generate a concise summary "
               "that encapsulates the user's overall preference.\nNote that the newly generated summary of user "
               "preferences should be consistent with the format of the given summaries.")
_TRSR_UPDATE_SHOP = (
    "Given the following summary of a user's preferences and a list of recent purchases they have made, analyze whether "
    "the user's shopping preferences and habits have changed. Taking into account both the existing summary of user "
    "preferences and the user{apos}s most recent purchase records, generate an updated concise summary that captures the "
    "user's preferences, personality, and shopping habits. Note that the newly generated summary of user preferences "
    "should be consistent with the format of the previous Preference Summary. It should serve as a complete summary of "
    "the user, rather than a separate narrative of the user's original summary and current preferences.")
_TRSR_UPDATE_NEWS = (
    "Given the following summary of a user's news reading preference, and a list of recent news they have read, analyze "
    "whether the user's news reading preferences and habits have changed. Taking into account both the existing summary "
    "of user preferences and the user{apos}s most recent reading records, generate an updated concise summary that "
    "captures the user's news reading preferences. Note that the newly generated summary of user preferences should be "
    "consistent with the format of the previous Preference Summary. It should serve as a complete summary of the user, "
    "rather than a separate narrative of the user's original summary and current preferences.")
_TRSR_REC_SHOP = (
    "Given a preference summary of the user, and information related to the historical items the user has purchased, "
    "predict whether the user will click on the given next product. Note that the preference summary captures long-term "
    "interests, while the recent items indicate short term interests. Both of them should be holistically considered "
    "for a more comprehensive understanding of user behavior. Please output {answers}.")
_TRSR_REC_NEWS = (
    "Given a news reading preference summary of the user, and information related to the historical news the user has "
    "read, predict whether the user will click on the given next news. Note that the preference summary captures "
    "long-term interests, while the recent five news indicate short term interests. Both of them should be holistically "
    "considered for a more comprehensive understanding of user behavior. Please output 'yes' or 'no'.")


def _trsr(name: str, user: str, note: str) -> None:
    register(PromptTemplate(name=f"llm_trsr.{name}", version=1, user=user, note=note))


_trsr("paper.shopping.block",
      "Given the historical purchase data of a user, including the titles, descriptions, and attributes of the items "
      "they have bought, craft a concise summary that captures the user's preferences, personality, and shopping "
      "habits.\n\n[Historical Purchase Data]\n{items}", "Fig. 3: block summarization (Amazon-M2)")
_trsr("paper.shopping.merge", _TRSR_MERGE + "\n\n[User Preferences Summaries]\n{summaries}", "Fig. 4: hierarchical merge")
_trsr("paper.shopping.update", _TRSR_UPDATE_SHOP.format(apos="'") + "\n\n[Previous Preference Summary]\n{summary}\n\n"
      "[Recent Purchase Data]\n{items}", "recurrent update (shopping): the code's text in Fig. 7's layout")
_trsr("paper.shopping.recommend", _TRSR_REC_SHOP.format(answers="'Yes' or 'No'") + "\n\n[Preference Summary]\n"
      "{summary}\n\n[Historical Items]\n{recent}\n\n[Next Item]\n{candidate}", "Fig. 8: recommendation (Amazon-M2)")
_trsr("paper.news.block",
      "Given the historical news reading data of a user, including the categories and titles of the news, craft a "
      "concise summary that captures the user's news reading preferences.\n\n[News Reading Data]\n{items}",
      "Fig. 6: first block summarization (MIND)")
_trsr("paper.news.merge", _TRSR_MERGE + "\n\n[User Preferences Summaries]\n{summaries}", "Fig. 4: hierarchical merge")
_trsr("paper.news.update", _TRSR_UPDATE_NEWS.format(apos="'") + "\n\n[Previous Preference Summary]\n{summary}\n\n"
      "[Recent News Reading Data]\n{items}", "Fig. 7: recurrent summarization (MIND)")
_trsr("paper.news.recommend", _TRSR_REC_NEWS + "\n\n[Preference Summary]\n{summary}\n\n[Historical News]\n{recent}\n\n"
      "[Next News]\n{candidate}", "recommendation (MIND): the code's text in Fig. 8's layout")
_trsr("code.shopping.block",
      "Given the above historical purchase data of a user, including the titles, descriptions, and attributes of the "
      "items they have bought, craft a concise summary that captures the user's preferences, personality, and shopping "
      "habits.\n[historical purchase data]:\n{items}", "code: Amazon block / first block")
_trsr("code.shopping.merge", _TRSR_MERGE + "\n{summaries}", "code: hierarchical merge")
_trsr("code.shopping.update", _TRSR_UPDATE_SHOP.format(apos="\u2019") + "\n[Previous Preference Summary]:\n{summary}\n"
      "[Recent purchase data]:\n{items}", "code: Amazon recurrent update")
_trsr("code.shopping.recommend", _TRSR_REC_SHOP.format(answers="'yes' or 'no'") + "\n[Preference Summary]\n{summary}\n"
      "[Historical Items]\n{recent}\n[Next Item]\n{candidate}", "code: Amazon recommendation")
_trsr("code.news.block",
      "Given the historical news reading data of a user, including the categories, titles, and abstracts of the news "
      "they have read, craft a concise summary that captures the user's news reading preferences.\n"
      "[news reading data]:\n{items}", "code: MIND block / first block")
_trsr("code.news.merge", _TRSR_MERGE + "\n{summaries}", "code: hierarchical merge")
_trsr("code.news.update", _TRSR_UPDATE_NEWS.format(apos="\u2019") + "\n[Previous Preference Summary]:\n{summary}\n"
      "[Recent news reading data]:\n{items}", "code: MIND recurrent update")
_trsr("code.news.recommend", _TRSR_REC_NEWS + "\n[Preference Summary]\n{summary}\n[Historical News]\n{recent}\n"
      "[Next News]\n{candidate}", "code: MIND recommendation")
