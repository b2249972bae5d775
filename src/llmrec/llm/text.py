"""Item text: one template per dataset, rendered from the dataset's item catalogue, truncated by tokens.

A template is

- ``"auto"``: the dataset's default (:data:`DEFAULT_TEMPLATES`; all text columns for other datasets);
- a Python format string over the text columns, e.g. ``"{title}"`` or ``"{title} ({genres})"``. Missing
  values (no text row, null, ``nan``) render as empty strings and runs of whitespace are collapsed;
- ``"kv:title,description"``: HLLM's official layout, ``"title: X"`` + ``"description: Y"`` joined by
  ``field_sep`` (``""`` in the paper's code, so ``"title: Xdescription: Y"``), empty fields skipped.

Tokens are counted with the backbone's tokenizer: :func:`tokenize_texts` keeps the *first* ``max_tokens``
tokens (special tokens included), as HLLM's code does.
"""

from __future__ import annotations

import hashlib
import re
import string

DEFAULT_TEMPLATES: dict[str, str] = {
    "beauty": "{title}",
    "sports": "{title}",
    "toys": "{title}",
    "ml-1m": "{title} {genres}",
    "ml-1m-pairs": "{title} {genres}",
    "ml-100k": "{title} {genres}",
    "yelp": "{categories}",
    "mind-sample": "{title} {category} {abstract}",
    "mind": "{title} {category} {abstract}",
    "taobao-sample": "{category}",
}

HLLM_PROMPT = "Compress the following sentence into embedding: "

_WS = re.compile(r"\s+")


def _clean(v) -> str:
    if v is None:
        return ""
    s = str(v)
    return "" if s.strip().lower() in ("", "nan", "none", "null") else s


def default_template(ds) -> str:
    t = DEFAULT_TEMPLATES.get(ds.name)
    cols = ds.text_columns()
    if t is not None and all(f in cols for f in template_fields(t)):
        return t
    return " ".join("{" + c + "}" for c in cols)


def template_fields(template: str) -> list[str]:
    if template.startswith("kv:"):
        return [f.strip() for f in template[3:].split(",") if f.strip()]
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def resolve_template(ds, template: str | None) -> str:
    """The concrete template (``auto`` resolved), checked against the dataset's columns."""
    t = default_template(ds) if template in (None, "", "auto") else template
    cols = ds.text_columns()
    missing = [f for f in template_fields(t) if f not in cols]
    if missing:
        raise ValueError(
            f"item template {t!r} uses {missing} but dataset {ds.name!r} has the text columns {cols or '(none)'}"
        )
    return t


def render(template: str, row: dict, field_sep: str = "") -> str:
    if template.startswith("kv:"):
        parts = [f"{f}: {_clean(row.get(f))}" for f in template_fields(template) if _clean(row.get(f))]
        return field_sep.join(parts)
    vals = {f: _clean(row.get(f)) for f in template_fields(template)}
    return _WS.sub(" ", template.format(**vals)).strip()


def item_texts(ds, template: str | None = "auto", field_sep: str = "") -> list[str]:
    """One string per item index (items without a text row get the empty string)."""
    t = resolve_template(ds, template)
    cols = ["item"] + [c for c in ds.text_columns() if c in template_fields(t)]
    out = [""] * ds.n_items
    for r in ds.item_text.select(cols).iter_rows(named=True):
        i = r["item"]
        if i is not None and 0 <= i < ds.n_items:
            out[i] = render(t, r, field_sep)
    return out


def texts_hash(texts: list[str]) -> str:
    """The data hash of an item-text list (order matters: index i is item i)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def tokenize_texts(tokenizer, texts: list[str], max_tokens: int, prompt: str = "") -> list[list[int]]:
    """Token ids of ``prompt + text`` per text, the first ``max_tokens`` kept (never empty)."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    side = getattr(tokenizer, "truncation_side", "right")
    tokenizer.truncation_side = "right"  # keep the head of the text
    try:
        enc = tokenizer([prompt + t for t in texts], add_special_tokens=True, truncation=True, max_length=max_tokens)
    finally:
        tokenizer.truncation_side = side
    fallback = next((x for x in (tokenizer.bos_token_id, tokenizer.cls_token_id, tokenizer.unk_token_id,
                                 tokenizer.pad_token_id, 0) if x is not None))
    return [list(ids) if len(ids) else [fallback] for ids in enc["input_ids"]]
