"""One typed, validated config per experiment.

A config is YAML (or a dict) with the sections below. Unknown keys and wrong types are errors that name the
key. ``--set a.b=value`` overrides any key (the value is parsed as YAML: ``--set eval.ks=[5,10]``). The model's
own hyper-parameters live under ``params`` and are validated by the model's ``Params`` class, so the resolved
config written into every run directory lists every default that was used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from llmrec.data.dataset import DataConfig, check_path_component
from llmrec.data.records import RecordsConfig


class ConfigError(ValueError):
    """A bad config value: the message names the key and where it came from (the file, or --set)."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        super().__init__(message)
        self.key, self.source = key, source


class CandidateConfig(BaseModel):
    """Sampled candidate sets for 1:N protocols (e.g. LLM-TRSR's 1:20)."""

    model_config = ConfigDict(extra="forbid")
    n_neg: int = Field(100, ge=1)
    strategy: Literal["uniform", "popularity"] = "uniform"
    seed: int = Field(0, ge=0)


class LooSplit(BaseModel):
    """``protocol: loo`` (the default): leave-one-out, the last item of every user is the test target, the one
    before it the validation target."""

    model_config = ConfigDict(extra="forbid")
    protocol: Literal["loo"] = "loo"
    candidates: CandidateConfig | None = Field(None, description="rank inside sampled candidate sets instead of all items")


class SessionSplit(BaseModel):
    """``protocol: session`` (llmrec.data.sessions; docs/sessions.md): sessions cut at idle gaps, the last session
    out. It always ranks all training items (no sampled candidates)."""

    model_config = ConfigDict(extra="forbid")
    protocol: Literal["session"]
    session_gap: int = Field(1800, ge=1, description="idle gap in seconds that starts a new session")
    session_task: Literal["next-item", "next-session", "both"] = Field(
        "next-item", description="predict the next item, or the whole next session; 'both': one fit, selected on next-item "
        "validation, tested on both tasks (the next-session result goes to RUN/session-next-session/metrics.json)")
    session_targets: Literal["last", "all"] = Field("last", description="next-item: only the last item of the held-out session, or every position")
    session_include_first: bool = Field(False, description="next-item 'all': also predict a session's first item (from earlier sessions only)")
    session_dedup: bool = Field(False, description="drop repeated items inside a session (first occurrence kept)")
    session_min_item_count: int = Field(0, ge=0, description="drop items with fewer interactions (after sessionizing)")
    session_min_length: int = Field(1, ge=1, description="drop sessions with fewer interactions")
    session_min_user_sessions: int = Field(1, ge=1, description="drop users with fewer sessions")
    session_max_user_sessions: int | None = Field(None, ge=1, description="drop users with more sessions")
    session_min_eval_length: int = Field(2, ge=1, description="held-out sessions shorter than this after removing unseen items are not evaluated")

    @property
    def candidates(self) -> None:
        """The session protocol ranks all training items: never sampled candidate sets."""
        return None


class RecordsSplit(BaseModel):
    """``protocol: records`` (llmrec.data.records): one record per user, LLM-TRSR's 1:20 sampled candidates."""

    model_config = ConfigDict(extra="forbid")
    protocol: Literal["records"]
    candidates: CandidateConfig | None = Field(None, description="the sampled candidate sets (default 1:20)")
    records: RecordsConfig = Field(default_factory=RecordsConfig)

    @model_validator(mode="after")
    def _always_sampled(self):
        if self.candidates is None:  # the records protocol is always 1:N sampled
            self.candidates = CandidateConfig(n_neg=20)
        return self


_SPLIT_SECTIONS: dict[str, type[BaseModel]] = {"loo": LooSplit, "session": SessionSplit, "records": RecordsSplit}


def _protocol_of(v: Any) -> str | None:
    p = v.get("protocol", "loo") if isinstance(v, dict) else getattr(v, "protocol", None)
    return p if isinstance(p, str) else None


# The split section: one typed section per protocol, chosen by its ``protocol`` key (default 'loo'), so a key the
# protocol does not use is an error that names it.
SplitConfig = Annotated[
    Union[Annotated[LooSplit, Tag("loo")], Annotated[SessionSplit, Tag("session")],
          Annotated[RecordsSplit, Tag("records")]],
    Discriminator(_protocol_of),
]
_SPLIT_ADAPTER = TypeAdapter(SplitConfig)


def split_config(**keys: Any) -> LooSplit | SessionSplit | RecordsSplit:
    """The split section for ``keys`` (as under ``split:`` in a config), e.g. ``split_config(protocol="session")``."""
    return _SPLIT_ADAPTER.validate_python(keys)


def _upgrade_saved_split(split: Any) -> Any:
    """A config.yaml written before the split had one section per protocol lists every key of every protocol:
    keep those of its own protocol (a hand-written config never lists them all, so it is not touched)."""
    legacy = {"protocol", "candidates", "records", *SessionSplit.model_fields}
    if not (isinstance(split, dict) and legacy <= set(split)):
        return split
    section = _SPLIT_SECTIONS.get(_protocol_of(split) or "")
    if section is None:
        return split
    keep = set(section.model_fields) - ({"candidates"} if section is SessionSplit else set())
    return {k: v for k, v in split.items() if k in keep}


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20], min_length=1)
    mask_history: bool = True
    batch_size: int = Field(512, ge=1)
    validate_split: bool = Field(True, description="also evaluate on the validation split")
    keep_rows: bool = Field(False, description="keep per-user metric rows (for significance tests)")
    sample_users: int | None = Field(None, ge=1, description="evaluate validation and test on a seeded sample of this "
                                     "many users (the same users for every model with the same split and sample_seed)")
    sample_seed: int = Field(0, ge=0, description="seed of the evaluation user sample")

    @field_validator("ks")
    @classmethod
    def _ks_positive(cls, v: list[int]) -> list[int]:  # checked against the catalogue once the data is loaded
        bad = [k for k in v if k < 1]
        if bad:
            raise ValueError(f"every cutoff must be >= 1, got {bad[0]}")
        if len(set(v)) != len(v):
            raise ValueError(f"cutoffs must be distinct, got {v}")
        return v


class TrainConfig(BaseModel):
    """Settings for trained (neural) models; ignored by models that have nothing to train."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(50, ge=0)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0, description="max gradient norm; null disables clipping")
    patience: int | None = Field(5, ge=1, description="early stopping patience in epochs on valid NDCG@10; null disables")
    monitor: str = "NDCG@10"
    eval_every: int = Field(1, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    max_eval_users: int | None = Field(None, ge=1, description="evaluate validation on a fixed random subset of users during training")
    max_minutes: float | None = Field(
        None, gt=0, description="time budget: stop after the epoch at which training + validation wall time reaches it "
        "(the best epoch so far is kept; fit_info records stopped_by_budget)")
    ema: float | None = Field(
        None, gt=0, lt=1, description="keep an exponential moving average of the weights, this decay per optimizer "
        "step (e.g. 0.99; warmed up as min(ema, (1+n)/(10+n)) after n steps): validation, early stopping, the best "
        "epoch and the saved model use the averaged weights; training continues from the raw ones. Shared "
        "epoch trainer only (the models without their own fit)")
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    checkpoint: bool = True
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas (SASRec's paper uses (0.9, 0.98))")
    accelerate: Literal["auto", "on", "off"] = Field(
        "auto", description="use Hugging Face accelerate: auto = when launched by `accelerate launch`, on a GPU, or with mixed precision"
    )

    @field_validator("monitor")
    @classmethod
    def _monitor_metric(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"(HR|NDCG|MRR|Precision|Recall)@[1-9][0-9]*", v):
            raise ValueError(f"expected a metric like 'NDCG@10' (HR|NDCG|MRR|Precision|Recall @ k >= 1), got {v!r}")
        return v


class TrackConfig(BaseModel):
    """Experiment tracking (llmrec.training.tracking): off by default."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["none", "tensorboard", "mlflow"] = Field(
        "none", description="tensorboard: event files in RUN/tensorboard; mlflow: a run in a local store or tracking URI")
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI; default a local SQLite store RUN/../mlflow.db")
    experiment: str = Field("llmrec", min_length=1, description="MLflow experiment name")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    data: DataConfig
    split: SplitConfig = Field(default_factory=LooSplit)
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)
    seed: int = Field(42, ge=0)
    threads: int | None = Field(None, ge=1, description="torch.set_num_threads; default: all cores")
    progress: bool = True
    _source: str | None = PrivateAttr(None)  # the config file (for error messages after loading)
    _overrides: list[str] = PrivateAttr(default_factory=list)  # the --set overrides (blamed for their keys)

    @field_validator("split", mode="before")
    @classmethod
    def _saved_split(cls, v: Any) -> Any:
        return _upgrade_saved_split(v)

    @field_validator("name")
    @classmethod
    def _name_is_one_folder(cls, v: str | None) -> str | None:  # it names a folder under runs/
        return None if v is None else check_path_component(v)

    def resolved(self) -> "RunConfig":
        """Validate ``params`` against the model and fill in its defaults."""
        return _resolve(self, self._source, self._overrides)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _resolve(cfg: RunConfig, source: str | None, overrides: list[str]) -> RunConfig:
    from llmrec.models import get_model_class

    try:
        klass = get_model_class(cfg.model)
    except KeyError as e:
        raise ConfigError(f"{_origin('model', source, overrides)}model: {e.args[0]}", key="model",
                          source=_source_of("model", source, overrides)) from None
    try:
        p = klass.Params(**cfg.params)
    except ValidationError as e:
        raise _validation_error(e, source, overrides, prefix="params") from None
    needs = getattr(klass.Params, "needs_protocol", None)  # e.g. HNVM / HRNN train on sessions
    if needs and cfg.split.protocol not in needs:
        key = "split.protocol" if _blame("split.protocol", overrides) else "model"
        o = _origin(key, source, overrides)
        raise ConfigError(
            f"{o}split.protocol: model {cfg.model!r} needs protocol "
            f"{' or '.join(repr(x) for x in needs)}, got {cfg.split.protocol!r}", key="split.protocol",
            source=_source_of(key, source, overrides))
    out = cfg.model_copy(update={"model": cfg.model.lower(), "params": p.model_dump()})
    out._source, out._overrides = source, list(overrides)
    return out


def _override_keys(overrides: list[str] | None) -> dict[str, str]:
    return {ov.split("=", 1)[0].strip(): ov for ov in overrides or [] if "=" in ov}


def _blame(loc: str, overrides: list[str] | None) -> str | None:
    """The ``--set`` override that gave the value at ``loc`` (a dotted key), if any."""
    hit = None
    for key, ov in _override_keys(overrides).items():
        if loc == key or loc.startswith(key + ".") or key.startswith(loc + "."):
            hit = ov
    return hit


def _source_of(loc: str, source: str | None, overrides: list[str] | None) -> str | None:
    ov = _blame(loc, overrides)
    return f"--set {ov}" if ov is not None else source


def _origin(loc: str, source: str | None, overrides: list[str] | None) -> str:
    """'--set k=v: ' or 'FILE: ' -- where the value at ``loc`` came from."""
    ov = _blame(loc, overrides)
    if ov is not None:
        return f"--set {ov}: "
    return f"{source}: " if source else ""


def _validation_error(e: ValidationError, source: str | None, overrides: list[str] | None, prefix: str = "") -> ConfigError:
    errs = e.errors()
    first = _key_and_message(errs[0], prefix)[0] if errs else None
    ov = _blame(first, overrides) if first else None
    return ConfigError(_format_validation(e, prefix=prefix, source=source, overrides=overrides), key=first,
                       source=f"--set {ov}" if ov else source)


def _key_and_message(err: dict, prefix: str = "") -> tuple[str, str]:
    """The dotted config key a pydantic error is about and a short message (the value quoted where useful)."""
    loc = ((prefix,) if prefix else ()) + tuple(str(x) for x in err["loc"])
    msg, kind, got = err["msg"], err["type"], err.get("input")
    protocol = None
    if len(loc) >= 2 and loc[0] == "split" and loc[1] in _SPLIT_SECTIONS:  # the union's tag is not a key
        protocol, loc = loc[1], (loc[0], *loc[2:])
    if kind in ("union_tag_invalid", "union_tag_not_found") and loc[-1:] == ("split",):
        if isinstance(got, dict):
            return ".".join((*loc, "protocol")), f"expected one of {', '.join(map(repr, _SPLIT_SECTIONS))} (got {got.get('protocol')!r})"
        return ".".join(loc), f"expected a section (protocol: {' | '.join(_SPLIT_SECTIONS)}, and its keys), got {got!r}"
    if kind == "extra_forbidden":
        msg = "unknown key"
        if protocol is not None and len(loc) == 2:
            owners = [p for p, s in _SPLIT_SECTIONS.items() if p != protocol and loc[1] in s.model_fields]
            msg = f"unknown key for split.protocol {protocol!r}" + (
                f" (it belongs to protocol {' / '.join(map(repr, owners))})" if owners else "")
    elif kind == "value_error":  # our own validators: the message already quotes the value
        msg = msg.removeprefix("Value error, ")
    elif "input" in err and not isinstance(got, dict):
        msg += f" (got {got!r})"
    return ".".join(loc), msg


def _format_validation(e: ValidationError, prefix: str = "", source: str | None = None,
                       overrides: list[str] | None = None) -> str:
    lines, from_file = [], False
    for err in e.errors():
        loc, msg = _key_and_message(err, prefix)
        line = f"  {loc}: {msg}"
        ov = _blame(loc, overrides)
        if ov is not None:
            line += f" -- given with --set {ov}"
        else:
            from_file = True
        lines.append(line)
    if from_file or not overrides:
        head = f"invalid config{' in ' + source if source else ''}:"
    else:
        head = f"invalid value given with --set{' (config ' + source + ')' if source else ''}:"
    return "\n".join([head] + lines)


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict."""
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"--set {ov!r}: expected key=value")
        key, raw = ov.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {e}") from None
        cur = d
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if cur.get(p) is None:
                cur[p] = {}
            if not isinstance(cur[p], dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
            cur = cur[p]
        cur[parts[-1]] = value
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> RunConfig:
    d: dict = dict(base or {})
    src = str(path) if path else None
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}", source=str(p))
        if p.is_dir():
            raise ConfigError(f"{p}: is a directory; expected a YAML config file", source=str(p))
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}", source=str(p)) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read the config file ({e})", source=str(p)) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level", source=str(p))
        d.update(loaded)
    d = apply_overrides(d, overrides or [])
    if isinstance(d.get("data"), str):
        d["data"] = {"name": d["data"]}
    try:
        cfg = RunConfig(**d)
    except ValidationError as e:
        raise _validation_error(e, src, overrides) from None
    return _resolve(cfg, src, overrides or [])
