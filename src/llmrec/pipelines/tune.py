"""``llmrec tune``: hyper-parameter search with Optuna, on validation only, resumable.

A *space file* names config keys (any key ``--set`` reaches, ``params.*`` included) and their ranges::

    train.lr:           {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    params.hidden_size: {type: categorical, choices: [32, 64, 128]}
    params.n_layers:    {type: int, low: 1, high: 3}
    train.dropout:      {type: float, low: 0.0, high: 0.5, step: 0.1}

Every key must exist in the resolved config and every range must be valid and give values of the key's type:
the space is checked when it is loaded, before any trial runs (an error names the key).

Each trial is an ordinary ``llmrec run`` of the config with the trial's values, in ``OUT/trials/trial-NNNN``,
that stops after validation (the test split is never evaluated during the search). The objective is the
validation metric ``train.monitor`` (NDCG@10 by default; maximised). Trained models report it after every
epoch, so bad trials are pruned (Optuna's median pruner by default). The study lives in ``OUT/study.db``
(SQLite): an interrupted ``tune`` run again with the same ``--out`` continues where it stopped (trials left
RUNNING by a killed process are marked FAIL and re-sampled) until ``--trials`` trials have finished (complete
or pruned). At the end the best configuration is written to ``OUT/best.yaml``, re-trained once with its own
seed into ``OUT/best/`` and tested once, and a table of the trials is printed.

Parallel search: start ``llmrec tune`` with the same ``--out`` (or the same ``--storage`` URL, e.g. a
PostgreSQL/MySQL database for several machines) in several processes with ``--keep-running``: they share the
study through Optuna's storage, and ``--trials`` counts the finished trials of all of them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmrec.config import ConfigError, load_config


class ParamSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern="^(int|float|categorical)$")
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("categorical takes 'choices', not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"empty range: low {self.low} > high {self.high}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("int ranges need integer low/high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self

    def suggest(self, trial, name: str):
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def corners(self) -> list:
        return list(self.choices) if self.type == "categorical" else (
            [int(self.low), int(self.high)] if self.type == "int" else [self.low, self.high])


def _flat_keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.add(key)
        if isinstance(v, dict):
            out |= _flat_keys(v, key + ".")
    return out


def _override(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"


def load_space(space_path: str | Path, config_path: str | Path, overrides: list[str] | None = None) -> dict[str, ParamSpace]:
    """Read and check a space file against the config it will tune (errors name the key and the file)."""
    p = Path(space_path)
    if not p.exists():
        raise ConfigError(f"space file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{p}: expected a mapping of config keys to ranges")
    base = load_config(config_path, overrides)
    known = _flat_keys(base.model_dump(mode="json"))
    space: dict[str, ParamSpace] = {}
    for key, spec in raw.items():
        if key not in known:
            raise ConfigError(f"{p}: {key}: not a key of {config_path} (keys look like train.lr or params.hidden_size)")
        if not isinstance(spec, dict):
            raise ConfigError(f"{p}: {key}: expected a mapping like {{type: float, low: 0.001, high: 0.1}}")
        try:
            space[key] = ParamSpace(**spec)
        except ValidationError as e:
            msg = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'range'}: {err['msg']}" for err in e.errors())
            raise ConfigError(f"{p}: {key}: {msg}") from None
        for v in space[key].corners():  # each end of the range must give a valid config
            try:
                load_config(config_path, list(overrides or []) + [_override(key, v)])
            except ConfigError as e:
                raise ConfigError(f"{p}: {key}: the value {v!r} is not valid for this key:\n{e}") from None
    return space


def _monitor_value(metrics: dict, monitor: str) -> float:
    v = (metrics.get("metrics", {}).get("valid") or {}).get(monitor)
    if v is None:
        v = (metrics.get("fit_info") or {}).get("best_valid")
    if v is None:
        raise ConfigError(f"train.monitor {monitor!r}: the run reported no such validation metric "
                          f"(add its cutoff to eval.ks, and keep eval.validate_split true)")
    return float(v)


def _trial_seconds(t) -> float | None:
    """A trial's seconds: measured by the objective, or from the study's timestamps (pruned and failed trials)."""
    if t.user_attrs.get("seconds") is not None:
        return t.user_attrs["seconds"]
    if t.datetime_start is not None and t.datetime_complete is not None:
        return round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
    return None


def tune(config_path: str | Path, space_path: str | Path, *, trials: int, out: str | Path, timeout_minutes: float | None = None,
         overrides: list[str] | None = None, sampler: str = "tpe", pruner: str = "median", seed: int = 0,
         storage: str | None = None, fail_running: bool = True, final: bool = True, progress: bool = False,
         final_overrides: list[str] | None = None) -> dict:
    """Run (or continue) a study; returns a summary (also written to ``OUT/tune.json``).

    ``final_overrides`` apply to the final re-train only (and to ``best.yaml``), after the trial values: e.g. trials
    capped with ``--set train.max_minutes=4`` and the best configuration trained as the untuned one was, with
    ``train.max_minutes=null``.
    """
    import optuna

    from llmrec.pipelines.run import run
    from llmrec.utils.io import atomic_write_json, atomic_write_text

    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    overrides = list(overrides or [])
    final_overrides = list(final_overrides or [])
    space = load_space(space_path, config_path, overrides)
    base = load_config(config_path, overrides)
    load_config(config_path, overrides + final_overrides)  # a bad --final-set fails now, not after the search
    monitor = base.train.monitor
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed), "random": lambda: optuna.samplers.RandomSampler(seed=seed)}
    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1), "none": optuna.pruners.NopPruner}
    if sampler not in samplers:
        raise ConfigError(f"--sampler: {sampler!r} is not one of {', '.join(samplers)}")
    if pruner not in pruners:
        raise ConfigError(f"--pruner: {pruner!r} is not one of {', '.join(pruners)}")
    study = optuna.create_study(study_name="llmrec", storage=storage or f"sqlite:///{(out / 'study.db').resolve()}",
                                direction="maximize", sampler=samplers[sampler](), pruner=pruners[pruner](), load_if_exists=True)
    study.set_user_attr("config", str(config_path))
    if fail_running:  # trials a killed process left RUNNING: failed, their slots are sampled again
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)

    def objective(trial) -> float:
        values = {k: s.suggest(trial, k) for k, s in space.items()}
        cfg = load_config(config_path, overrides + [_override(k, v) for k, v in values.items()])
        cfg = cfg.model_copy(update={"progress": progress})

        def prune_cb(model, epoch, rec):
            v = (rec.get("valid") or {}).get(monitor)
            if v is not None:
                trial.report(float(v), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch} ({monitor} {v:.4f})")

        t0 = time.perf_counter()
        m = run(cfg, out / "trials" / f"trial-{trial.number:04d}", callbacks=[prune_cb], evaluate_test=False)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
        return _monitor_value(m, monitor)

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done < trials:
        study.optimize(objective, timeout=None if timeout_minutes is None else 60.0 * timeout_minutes,
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished)], catch=(FloatingPointError,))

    rows = [{"trial": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "seconds": _trial_seconds(t)} for t in study.get_trials(deepcopy=False)]
    summary: dict = {"config": str(config_path), "space": str(space_path), "monitor": monitor, "overrides": overrides,
                     "final_overrides": final_overrides, "timeout_minutes": timeout_minutes, "trials": rows,
                     "finished": len([r for r in rows if r["state"] in ("COMPLETE", "PRUNED")])}
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if complete:
        best = study.best_trial
        best_cfg = load_config(config_path, overrides + [_override(k, v) for k, v in best.params.items()] + final_overrides)
        atomic_write_text(out / "best.yaml", best_cfg.to_yaml())
        summary["best"] = {"trial": best.number, "valid": best.value, "params": best.params}
        if final:
            m = run(best_cfg.model_copy(update={"progress": progress}), out / "best")
            summary["best"]["retrained"] = {"valid": (m["metrics"].get("valid") or {}).get(monitor),
                                            "test": m["metrics"]["test"], "run_dir": str(out / "best")}
    atomic_write_json(out / "tune.json", summary)
    return summary
