"""Book-keeping for models that answer with ranked item lists (PALR, GenRec, re-rankers) during an evaluation.

The evaluator ranks whatever ``score`` returns; a list model also wants to report, over the same users,

- output counts (invalid / duplicate / history / not-a-candidate outputs, from
  :func:`llmrec.llm.itemtext.clean_list`) and their rates;
- the metrics of *other* rankings of the same rows: a first-stage retriever's full scores, a second ranking mode
  run beside the main one (e.g. constrained generation next to likelihood ranking), the retriever's recall@N;
- the predictions rows (user, ranked items, raw generation) for ``predictions.parquet``;
- seconds per stage.

:class:`ListEvalLog` collects these between ``Recommender.begin_eval`` and ``end_eval``. The targets of the rows
come from the evaluation set the model was fit with (looked up by user); rows of unknown users (a loaded model
serving new requests) are logged without metrics. Every metric goes through :mod:`llmrec.evaluation.metrics`
(pessimistic ranks, history masked, unlisted = after every listed item).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

OUTPUT_KINDS = ("invalid", "duplicate", "history", "not_candidate")


def rates(counts: dict) -> dict:
    n = max(1, counts.get("outputs", 0))
    return {k: counts.get(k, 0) / n for k in OUTPUT_KINDS}


class ListEvalLog:
    def __init__(self, name: str, targets: dict[int, int] | None = None, ks=(1, 5, 10, 20)):
        self.name, self.targets, self.ks = name, dict(targets or {}), tuple(ks)
        self.counts: dict[str, dict] = defaultdict(dict)
        self.ranks: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.recall: list[float] = []
        self.rows: list[dict] = []
        self.seconds: dict[str, float] = defaultdict(float)
        self.extra: dict[str, list] = defaultdict(list)
        self.users = 0

    @classmethod
    def for_eval_set(cls, name: str, eval_set, ks=(1, 5, 10, 20)) -> ListEvalLog:
        tg = {}
        if eval_set is not None and eval_set.targets is not None:
            tg = {int(u): int(t) for u, t in zip(eval_set.users, eval_set.targets)}
        return cls(name, tg, ks)

    def count(self, counts: dict, key: str = "main") -> None:
        acc = self.counts[key]
        for k, v in counts.items():
            acc[k] = acc.get(k, 0) + v

    def add(self, batch, n_items: int, lists: dict[str, list[list[int]]] | None = None,
            scores: dict[str, torch.Tensor] | None = None, candidates=None, rows: list[dict] | None = None) -> None:
        """Log one batch: ranked ``lists`` and/or full ``scores`` (B, n_items) per name, the candidate sets
        (for recall@N) and the predictions ``rows``."""
        from llmrec.evaluation.evaluator import scores_from_lists
        from llmrec.evaluation.metrics import pessimistic_rank

        self.users += len(batch)
        self.rows += rows or []
        known = [r for r, u in enumerate(batch.users) if int(u) in self.targets]
        if not known:
            return
        idx = torch.tensor(known)
        tg = torch.tensor([self.targets[int(batch.users[r])] for r in known])
        mask = batch.history_mask(n_items)[idx]
        for name, ls in (lists or {}).items():
            self.ranks[name].append(pessimistic_rank(scores_from_lists([ls[r] for r in known], n_items), tg, mask))
        for name, sc in (scores or {}).items():
            self.ranks[name].append(pessimistic_rank(sc[idx].float(), tg, mask))
        if candidates is not None:
            self.recall += [float(int(t) in set(np.asarray(candidates[r]).tolist())) for r, t in zip(known, tg)]

    def report(self, **head) -> dict:
        from llmrec.evaluation.metrics import MetricAccumulator, single_target_metrics

        rep = dict(head)
        rep["users"] = self.users
        main = self.counts.get("main", {})
        rep["counts"], rep["rates"] = main, rates(main)
        rep["seconds"] = {k: round(v, 2) for k, v in self.seconds.items() if v}
        for name, ranks in self.ranks.items():
            acc = MetricAccumulator()
            acc.add(single_target_metrics(torch.cat(ranks), self.ks))
            rep[name] = {"n": acc.count, **acc.result()}
        for key, c in self.counts.items():
            if key != "main":
                rep.setdefault(key, {}).update({"counts": c, "rates": rates(c)})
        if self.recall:
            rep.setdefault("retriever", {})["candidate_recall"] = float(np.mean(self.recall))
        for k, v in self.extra.items():
            rep[k] = v
        rep["predictions"] = self.rows
        return rep
