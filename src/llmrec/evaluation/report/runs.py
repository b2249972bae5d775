"""Our run directories (metrics.json files grouped over seeds) and the published numbers (published.yaml)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PUBLISHED_PATH = Path(__file__).resolve().parent.parent / "published.yaml"

# config keys that do not change results (or are the seed): ignored when deciding that runs differ only by seed
_RUNTIME_KEYS = {
    ("seed",), ("threads",), ("progress",), ("name",),
    ("data", "path"), ("data", "cache_dir"), ("data", "use_cache"),
    ("eval", "batch_size"), ("eval", "keep_rows"), ("train", "eval_batch_size"), ("train", "checkpoint"),
    # a wall-time budget: runs it stopped are marked in the run list ("stopped by the time budget")
    ("train", "max_minutes"),
}
_FAMILY_ORDER = ["HR", "Recall", "NDCG", "MRR", "Precision"]
_DEFAULT_METRICS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR@10"]
_MODEL_ALIASES = {"bprmf": "bpr", "mf": "bpr", "knn": "itemknn", "neumf": "ncf", "sasrecplus": "sasrec"}


def norm_model(name: str) -> str:
    k = re.sub(r"[^0-9a-z]", "", str(name).lower())
    return _MODEL_ALIASES.get(k, k)


def metric_key(m: str) -> tuple:
    fam, _, k = m.partition("@")
    fi = _FAMILY_ORDER.index(fam) if fam in _FAMILY_ORDER else len(_FAMILY_ORDER)
    return (fi, fam, int(k) if k.isdigit() else 0)


def canonical_metric(m: str, multi_target: bool = False) -> str:
    """Recall@k with one target per example is HR@k: show both under HR@k."""
    if not multi_target and m.startswith("Recall@"):
        return "HR@" + m.split("@", 1)[1]
    return m


# ----------------------------------------------------------------------------------------------------
# published numbers


def load_published(path: str | Path | None = None) -> dict:
    d = yaml.safe_load(Path(path or PUBLISHED_PATH).read_text())
    validate_published(d)
    return d


def validate_published(d: dict) -> None:
    """Structural checks (raise ValueError naming the entry)."""
    if not isinstance(d, dict) or "tables" not in d or "sources" not in d:
        raise ValueError("published data needs 'sources' and 'tables'")
    for n, t in enumerate(d["tables"]):
        where = f"tables[{n}] ({t.get('source')}, {t.get('where')})"
        for k in ("source", "where", "dataset", "data", "protocol", "unit", "rows"):
            if k not in t:
                raise ValueError(f"{where}: missing {k!r}")
        if t["source"] not in d["sources"]:
            raise ValueError(f"{where}: unknown source {t['source']!r}")
        if not isinstance(t.get("data_matches", True), bool):
            raise ValueError(f"{where}: data_matches must be true or false")
        if t["unit"] not in ("fraction", "percent"):
            raise ValueError(f"{where}: unit must be fraction or percent")
        for r in t["rows"]:
            for k in ("model", "label", "metrics"):
                if k not in r:
                    raise ValueError(f"{where}: row {r.get('label')!r} misses {k!r}")
            for m, v in r["metrics"].items():
                if not isinstance(v, (int, float)) or not re.fullmatch(r"(HR|Recall|NDCG|MRR|Precision)@\d+", m):
                    raise ValueError(f"{where}: row {r['label']!r}: bad metric {m}={v!r}")
            for m in (r.get("flags") or {}):
                if m not in r["metrics"]:
                    raise ValueError(f"{where}: row {r['label']!r}: flag on a metric it does not have: {m}")


def published_protocol_text(p: dict) -> str:
    ev = p.get("eval", "?")
    if ev == "sampled" and p.get("candidates"):
        ev = f"sampled ({p['candidates']} candidates)"
    mask = {True: "masked", False: "unmasked", None: "mask not stated"}[p.get("mask_history")]
    task = f" · {p['task']}" if p.get("task") else ""
    return f"{p.get('split', '?')} · {ev} · {mask}{task}"


# ----------------------------------------------------------------------------------------------------
# our runs


def find_metrics(paths) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == "metrics.json":
            out.append(p)
        elif p.is_dir():
            found = sorted(p.rglob("metrics.json"))
            if not found:
                raise FileNotFoundError(f"{p}: no metrics.json in this directory or below")
            out.extend(found)
        else:
            raise FileNotFoundError(f"{p}: not a run directory or metrics.json")
    seen, uniq = set(), []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq


def _strip_runtime(cfg, prefix=()):
    """The config minus run-time keys; a key set to null counts as absent (so a run made before an optional key
    existed still groups with later runs that leave it unset)."""
    if not isinstance(cfg, dict):
        return cfg
    return {k: _strip_runtime(v, prefix + (k,)) for k, v in cfg.items()
            if prefix + (k,) not in _RUNTIME_KEYS and v is not None}


@dataclass
class RunGroup:
    dataset: str
    model: str
    name: str
    protocol: str
    eval_protocol: str
    id_order: str
    mask_history: bool
    n_neg: int | None
    multi_target: bool
    runs: list[dict] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    @property
    def seeds(self) -> list:
        return [r.get("seed") for r in self.runs]

    def stats(self, split: str = "test") -> dict[str, tuple[float, float | None, int]]:
        """metric -> (mean, sample std or None, n)."""
        vals: dict[str, list[float]] = {}
        for r in self.runs:
            for m, v in ((r.get("metrics") or {}).get(split) or {}).items():
                if isinstance(v, (int, float)):
                    vals.setdefault(m, []).append(float(v))
        out = {}
        for m, vs in vals.items():
            mean = sum(vs) / len(vs)
            std = math.sqrt(sum((v - mean) ** 2 for v in vs) / (len(vs) - 1)) if len(vs) > 1 else None
            out[m] = (mean, std, len(vs))
        return out

    def protocol_text(self) -> str:
        ev = self.eval_protocol
        if ev == "sampled" and self.n_neg:
            ev = f"sampled ({self.n_neg + 1} candidates)"
        return f"{self.protocol} · {ev} · {'masked' if self.mask_history else 'unmasked'} · {self.id_order} ids"


def group_runs(metrics_files: list[Path]) -> list[RunGroup]:
    groups: dict[str, RunGroup] = {}
    for p in metrics_files:
        m = json.loads(Path(p).read_text())
        cfg = m.get("config") or {}
        cand = ((cfg.get("split") or {}).get("candidates") or {})
        name = cfg.get("name") or Path(p).parent.name
        fp = json.dumps(_strip_runtime(cfg), sort_keys=True, default=str)
        key = json.dumps([m.get("dataset"), m.get("model"), m.get("protocol"), m.get("eval_protocol"), m.get("id_order"),
                          m.get("mask_history"), name, fp], default=str)
        if key not in groups:
            # same name, different config: keep apart, and say so in the name
            # (the same config tested on two protocols -- session_task: both -- is two rows told apart by protocol)
            clash = sum(1 for g in groups.values() if g.name.split(" [")[0] == name and g.dataset == m.get("dataset")
                        and g.protocol == m.get("protocol"))
            groups[key] = RunGroup(
                dataset=m.get("dataset", "?"), model=m.get("model", "?"), name=name + (f" [{clash + 1}]" if clash else ""),
                protocol=m.get("protocol", "?"), eval_protocol=m.get("eval_protocol", "?"), id_order=m.get("id_order", "?"),
                mask_history=bool(m.get("mask_history")), n_neg=cand.get("n_neg") if cand else None,
                multi_target=str(m.get("protocol", "")).endswith("next-session"),  # a set of targets per row
            )
        groups[key].runs.append(m)
        groups[key].paths.append(Path(p).parent)
    return list(groups.values())
