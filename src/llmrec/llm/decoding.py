"""Constrained decoding: generation that can only produce real items.

- :class:`Trie` — a prefix tree over token sequences (one per item). ``next_tokens(prefix)`` lists the tokens
  that keep ``prefix`` on a path to some item; ``lookup(seq)`` returns the item a complete sequence spells.
  GenRec's beam search uses it directly (every beam is one valid item string).
- :class:`ListConstraint` — a list of *distinct* items from a candidate set, each written as its token
  sequence followed by a separator, ending after ``max_items`` items (or when the candidates run out) with
  the end tokens. PALR_v2's "select 10 items from the 50 candidates" is this: every generated item is a
  candidate and none appears twice. ``parse(tokens)`` reads the items back from generated tokens.
- :func:`prefix_allowed_tokens_fn` — adapts per-row constraints to Hugging Face ``generate``
  (``prefix_allowed_tokens_fn=``), greedy or beam search, causal (left-padded prompts of one length) or
  seq2seq (decoder ids).

Tokenisation note: each item is tokenised on its own, so the generated token sequence is the concatenation of
per-item sequences, which may differ from how the tokenizer would split the decoded text; the items are read
back from the tokens (``parse``), never by re-tokenising text.
"""

from __future__ import annotations

from collections.abc import Sequence


class _Node:
    __slots__ = ("children", "items", "terminal")

    def __init__(self):
        self.children: dict[int, _Node] = {}
        self.items: list[int] = []  # every item whose sequence passes through this node
        self.terminal: int | None = None  # the item whose sequence ends here


class Trie:
    """Prefix tree over token sequences; ``items[i]`` is the label of sequence ``i`` (default: ``i``)."""

    def __init__(self, sequences: Sequence[Sequence[int]], items: Sequence[int] | None = None):
        self.root = _Node()
        items = list(range(len(sequences))) if items is None else list(items)
        if len(items) != len(sequences):
            raise ValueError("Trie: items and sequences differ in length")
        for seq, it in zip(sequences, items):
            if len(seq) == 0:
                raise ValueError(f"Trie: item {it} has an empty token sequence")
            node = self.root
            node.items.append(it)
            for t in seq:
                node = node.children.setdefault(int(t), _Node())
                node.items.append(it)
            if node.terminal is not None and node.terminal != it:
                raise ValueError(f"Trie: items {node.terminal} and {it} have the same token sequence")
            node.terminal = it
        self.n = len(sequences)

    def node(self, prefix: Sequence[int]) -> _Node | None:
        node = self.root
        for t in prefix:
            node = node.children.get(int(t))
            if node is None:
                return None
        return node

    def next_tokens(self, prefix: Sequence[int]) -> list[int]:
        node = self.node(prefix)
        return [] if node is None else list(node.children)

    def lookup(self, seq: Sequence[int]) -> int | None:
        node = self.node(seq)
        return None if node is None else node.terminal


class ListConstraint:
    """Up to ``max_items`` distinct items, each = its tokens + ``sep``, then ``end`` (e.g. [eos]).

    ``item_seqs[i]`` are the tokens of candidate ``items[i]`` (without the separator). The list always holds
    ``min(max_items, len(items))`` items: the end tokens are allowed only then."""

    def __init__(self, item_seqs: Sequence[Sequence[int]], items: Sequence[int], sep: Sequence[int], end: Sequence[int],
                 max_items: int):
        if len(set(items)) != len(items):
            raise ValueError("ListConstraint: candidate items must be distinct")
        self.trie = Trie([list(s) + list(sep) for s in item_seqs], items)
        self.end = [int(t) for t in end]
        self.target = min(int(max_items), len(items))

    def _walk(self, tokens: Sequence[int]):
        """(items completed, node inside the current item or None at an item boundary, position in end, ok)."""
        done: list[int] = []
        node = self.trie.root
        i = 0
        tokens = [int(t) for t in tokens]
        while i < len(tokens):
            if len(done) == self.target:  # only the end tokens may follow
                k = 0
                while i < len(tokens) and k < len(self.end) and tokens[i] == self.end[k]:
                    i += 1
                    k += 1
                return done, None, k, i == len(tokens) and True
            child = node.children.get(tokens[i])
            if child is None:
                return done, node, 0, False
            node = child
            i += 1
            if node.terminal is not None:  # sequences are prefix-free by construction (quoted items + sep)
                done.append(node.terminal)
                node = self.trie.root
        return done, node, 0, True

    def allowed(self, tokens: Sequence[int]) -> list[int]:
        """Tokens that may follow the generated ``tokens`` (empty = the list is complete)."""
        done, node, k, ok = self._walk(tokens)
        if not ok:
            return []
        if len(done) == self.target:
            return self.end[k:k + 1]
        used = set(done)
        return [t for t, ch in node.children.items() if any(it not in used for it in ch.items)]

    def parse(self, tokens: Sequence[int]) -> list[int]:
        """The items spelled by the generated ``tokens`` (in order)."""
        return self._walk(tokens)[0]


def prefix_allowed_tokens_fn(constraints: Sequence, prompt_len: int, fallback: Sequence[int]):
    """``generate(prefix_allowed_tokens_fn=...)`` for per-row constraints.

    ``constraints[b]`` has ``allowed(generated_tokens) -> list[int]`` (a :class:`ListConstraint`, or a
    :class:`Trie` through :class:`TrieConstraint`); ``prompt_len`` is the number of leading ids of each row
    that are not generated (the padded prompt length for a causal model; 1 = the decoder start token for a
    seq2seq model). When nothing is allowed (the row is complete) ``fallback`` (e.g. [eos, pad]) is returned."""
    fb = list(fallback)

    def fn(batch_id: int, input_ids) -> list[int]:
        gen = input_ids[prompt_len:].tolist()
        allowed = constraints[batch_id].allowed(gen)
        return allowed if allowed else fb

    return fn


class TrieConstraint:
    """One item from ``trie`` followed by ``end`` tokens (GenRec's beams); never one of the ``exclude`` items.

    With ``exclude`` (history-masked beams; ``item_tokens[i]`` = the token sequence item ``i`` was added to the trie
    with), a child node stays allowed while some non-excluded item passes through it, so no beam is spent on an
    excluded item. Counting the excluded items per node keeps each step O(children)."""

    def __init__(self, trie: Trie, end: Sequence[int] = (), exclude: Sequence[int] = (),
                 item_tokens: Sequence[Sequence[int]] | None = None):
        self.trie = trie
        self.end = [int(t) for t in end]
        self.excluded = {int(i) for i in exclude}
        if self.excluded and item_tokens is None:
            raise ValueError("TrieConstraint: exclude needs item_tokens (each item's token sequence)")
        self.blocked: dict[int, int] = {}  # id(node) -> excluded items passing through it
        for i in self.excluded:
            node = trie.root
            for t in item_tokens[i]:
                node = node.children[int(t)]
                self.blocked[id(node)] = self.blocked.get(id(node), 0) + 1

    def allowed(self, tokens: Sequence[int]) -> list[int]:
        tokens = [int(t) for t in tokens]
        node = self.trie.root
        for i, t in enumerate(tokens):
            ch = node.children.get(t)
            if ch is None:
                if node.terminal is not None and node.terminal not in self.excluded:  # item complete: the end follows
                    rest = tokens[i:]
                    k = len(rest)
                    return self.end[k:k + 1] if rest == self.end[:k] else []
                return []
            node = ch
        nxt = [t for t, ch in node.children.items() if len(ch.items) > self.blocked.get(id(ch), 0)]
        if node.terminal is not None and node.terminal not in self.excluded and self.end:
            nxt.append(self.end[0])
        return nxt
