"""Items as short strings inside LLM prompts, and LLM output read back into catalogue items.

Rendering (:func:`render_items`), one string per item index, always distinct:

- ``asin_title``: ``"B000142FVW (Opi Nail Lacquer, Not So Bora Pink)"`` (PALR on Amazon: the id column, then the
  title in parentheses);
- ``normalized_title``: MovieLens titles as people write them: ``"Blues Brothers, The (1980)"`` ->
  ``"The Blues Brothers"`` (year and alternative titles dropped, the trailing article moved back); items whose
  normalised titles collide get their year back, then their original id;
- ``title``: the title column as it is; any other string: a format template over the text columns.

Titles are cut to ``max_title_tokens`` tokens of the given tokenizer (head kept; the number of cut titles is
reported), since 50 candidates x full titles make prompts the CPU cannot afford. Double quotes inside texts
become single quotes, so that an item is always one ``"..."`` span in a prompt or an answer.

Parsing (:class:`ItemMatcher`, :func:`parse_items`): quoted spans of a generated answer (else its lines) in order;
each is matched by its id (``id_pattern``, e.g. an ASIN) when the rendering has one, else by exact normalised
title, else by a fuzzy title match (rapidfuzz, ``fuzzy_cutoff``). :func:`clean_list` drops invalid, duplicate and
history items (and, given candidates, items outside them) and counts each kind.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

ASIN_PATTERN = r"\b(B[0-9A-Z]{9}|[0-9]{9}[0-9X])\b"
_ARTICLES = ("The", "A", "An", "Les", "La", "Le", "L'", "Il", "Das", "Der", "Die", "El", "Los", "Las", "Lo", "Det", "Den")
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_TRAIL_ARTICLE = re.compile(r"^(?P<body>.*?),\s*(?P<art>" + "|".join(re.escape(a) for a in _ARTICLES) + r")$")
_WS = re.compile(r"\s+")
_QUOTED = re.compile(r'"([^"\n]{1,300})"')


def _clean(v) -> str:
    if v is None:
        return ""
    s = str(v)
    return "" if s.strip().lower() in ("", "nan", "none", "null") else _WS.sub(" ", s).strip()


def normalize_title(title: str) -> str:
    """MovieLens style ``"City of Lost Children, The (Cité des enfants perdus, La) (1995)"`` -> ``"The City of Lost Children"``."""
    t = _clean(title)
    t = _YEAR.sub("", t)
    # an alternative title in parentheses after the main one ("... (a.k.a. X)", "... (Original Title)")
    m = re.match(r"^(.*?\S)\s*\(([^()]*)\)\s*$", t)
    if m and m.group(1):
        t = m.group(1)
    m = _TRAIL_ARTICLE.match(t)
    if m:
        art = m.group("art")
        t = f"{art}{'' if art.endswith(chr(39)) else ' '}{m.group('body')}"
    return t.strip()


def match_key(s: str) -> str:
    """Case-, accent- and punctuation-insensitive key for exact title matching."""
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c)).lower()
    return _WS.sub(" ", re.sub(r"[^0-9a-z]+", " ", s)).strip()


@dataclass
class ItemTexts:
    texts: list[str]  # one per item index, distinct
    style: str
    titles: list[str]  # the (normalised, truncated) title part, for title matching
    ids: list[str] | None  # the id part (asin_title) or None
    n_truncated: int = 0
    n_disambiguated: int = 0
    info: dict = field(default_factory=dict)


def default_style(ds) -> str:
    cols = ds.text_columns()
    if "asin" in cols and "title" in cols:
        return "asin_title"
    if ds.name.startswith("ml-") and "title" in cols:
        return "normalized_title"
    return "title" if "title" in cols else " ".join("{" + c + "}" for c in cols)


def _truncate(title: str, tokenizer, max_tokens: int | None) -> tuple[str, bool]:
    if not max_tokens or tokenizer is None or not title:
        return title, False
    ids = tokenizer(title, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return title, False
    return tokenizer.decode(ids[:max_tokens]).strip(), True


def render_items(ds, style: str = "auto", tokenizer=None, max_title_tokens: int | None = None) -> ItemTexts:
    """One distinct prompt string per item of dataset ``ds`` (see the module docstring)."""
    style = default_style(ds) if style == "auto" else style
    cols = ds.text_columns()
    rows = {r["item"]: r for r in ds.item_text.iter_rows(named=True)}
    need = {"asin_title": ["asin", "title"], "normalized_title": ["title"], "title": ["title"]}.get(style)
    if need is not None and any(c not in cols for c in need):
        raise ValueError(f"item text style {style!r} needs the columns {need}; dataset {ds.name!r} has {cols}")
    titles, ids, years, truncated = [], [], [], 0
    for i in range(ds.n_items):
        r = rows.get(i, {})
        raw = _clean(r.get("title")) if "title" in cols else ""
        if style == "normalized_title":
            y = _YEAR.search(raw)
            years.append(y.group(1) if y else "")
            title = normalize_title(raw)
        elif style in ("asin_title", "title"):
            title = raw
        else:
            title = _WS.sub(" ", style.format(**{c: _clean(r.get(c)) for c in cols})).strip()
        title, cut = _truncate(title.replace('"', "'"), tokenizer, max_title_tokens)
        truncated += cut
        titles.append(title or ds.item_ids[i])
        ids.append(_clean(r.get("asin")) or ds.item_ids[i] if style == "asin_title" else None)
    if style == "asin_title":
        texts = [f"{a} ({t})" if t != a else a for a, t in zip(ids, titles)]
    else:
        texts = list(titles)
    # make every text distinct: the year (MovieLens), then the original id
    n_dis = 0
    for attempt in ("year", "id"):
        seen: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            seen.setdefault(t, []).append(i)
        dups = [ix for ix in seen.values() if len(ix) > 1]
        if not dups:
            break
        for ix in dups:
            for i in ix:
                extra = years[i] if attempt == "year" and years and years[i] else ds.item_ids[i] if attempt == "id" else ""
                if extra:
                    texts[i] = f"{texts[i]} ({extra})" if attempt == "year" else f"{texts[i]} #{extra}"
                    titles[i] = texts[i] if style != "asin_title" else titles[i]
                    n_dis += 1
    if len(set(texts)) != len(texts):  # pragma: no cover - the id suffix makes them distinct
        raise ValueError(f"item texts of {ds.name!r} are not distinct after disambiguation")
    return ItemTexts(texts=texts, style=style, titles=titles, ids=ids if style == "asin_title" else None,
                     n_truncated=truncated, n_disambiguated=n_dis,
                     info={"style": style, "max_title_tokens": max_title_tokens, "titles_truncated": truncated,
                           "disambiguated": n_dis, "items": ds.n_items})


def quote(text: str) -> str:
    return f'"{text}"'


def quoted_list(texts: Sequence[str], sep: str = ", ") -> str:
    return sep.join(quote(t) for t in texts)


class ItemMatcher:
    """Maps a generated item string to an item index (or None)."""

    def __init__(self, items: ItemTexts, *, id_pattern: str | None = None, fuzzy_cutoff: float | None = 90.0):
        self.items = items
        self.id_pattern = re.compile(id_pattern) if id_pattern else (re.compile(ASIN_PATTERN) if items.ids else None)
        self.by_id = {a: i for i, a in enumerate(items.ids)} if items.ids else {}
        self.by_text = {match_key(t): i for i, t in enumerate(items.texts)}
        for i, t in enumerate(items.titles):
            self.by_text.setdefault(match_key(t), i)
        self._keys = list(self.by_text)
        self.fuzzy_cutoff = fuzzy_cutoff

    def match(self, s: str) -> int | None:
        s = s.strip().strip('"').strip()
        if not s:
            return None
        if self.id_pattern is not None and self.by_id:
            m = self.id_pattern.search(s)
            if m:  # an id decides: a well-formed id that is not in the catalogue is a hallucination
                return self.by_id.get(m.group(1))
        k = match_key(s)
        if k in self.by_text:
            return self.by_text[k]
        if self.fuzzy_cutoff is None or not k:
            return None
        from rapidfuzz import fuzz, process

        best = process.extractOne(k, self._keys, scorer=fuzz.ratio, score_cutoff=self.fuzzy_cutoff)
        return None if best is None else self.by_text[best[0]]


def split_answer(text: str) -> list[str]:
    """The item strings of a generated answer: its quoted spans in order, else its non-empty lines."""
    spans = _QUOTED.findall(text)
    if spans:
        return spans
    return [ln.strip(" -*\t,.0123456789)") for ln in text.splitlines() if ln.strip(" -*\t,.0123456789)")]


def parse_items(text: str, matcher: ItemMatcher) -> list[tuple[str, int | None]]:
    return [(s, matcher.match(s)) for s in split_answer(text)]


def clean_list(items: Sequence[int | None], history: Sequence[int] = (), candidates: Sequence[int] | None = None,
               limit: int | None = None) -> tuple[list[int], dict]:
    """Drop invalid (None / outside ``candidates``), duplicate and history items; count each kind.

    Counts are over the first ``limit`` raw outputs when given (what the model was asked for)."""
    hist, cand = {int(h) for h in history}, None if candidates is None else {int(c) for c in candidates}
    raw = list(items)[:limit] if limit else list(items)
    out: list[int] = []
    seen: set[int] = set()
    c = {"outputs": len(raw), "invalid": 0, "duplicate": 0, "history": 0, "not_candidate": 0}
    for it in raw:
        if it is None:
            c["invalid"] += 1
        elif cand is not None and it not in cand:
            c["not_candidate"] += 1
        elif it in seen:
            c["duplicate"] += 1
        elif it in hist:
            c["history"] += 1
            seen.add(it)
        else:
            seen.add(it)
            out.append(int(it))
    return out, c
