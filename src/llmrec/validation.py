"""Checks of a loaded config against the data, run right after the dataset loads and before any training.

Everything a config can get wrong without looking at the data is checked when it loads (:mod:`llmrec.config`,
the models' ``Params``). What needs the data -- the protocol against the data's capabilities, cutoffs and
negatives against the catalogue, a split with nothing to evaluate -- is checked here, so a bad value fails in
seconds with one :class:`~llmrec.config.ConfigError` naming the key and where it was set (the file or --set),
never after the training time is spent and never as an empty or trivially perfect result.
"""

from __future__ import annotations

from llmrec.config import ConfigError, RunConfig, _origin
from llmrec.data.errors import DataError


def _fail(cfg: RunConfig, key: str, msg: str) -> ConfigError:
    src, ovs = cfg._source, cfg._overrides
    where = _origin(key, src, ovs)
    return ConfigError(f"{where}{key}: {msg}", key=key, source=where.rstrip(": ") or None)


def check_data(cfg: RunConfig, ds) -> None:
    """The config against the loaded dataset (before the split)."""
    if cfg.train.ema is not None:
        from llmrec.models import get_model_class

        if not getattr(get_model_class(cfg.model), "epoch_trainer", False):
            raise _fail(cfg, "train.ema", f"model {cfg.model!r} does not train with the shared epoch trainer, which is "
                        "what averages the weights; remove train.ema")
    sc = cfg.split
    if sc.protocol == "session" and not ds.has_timestamps:
        raise _fail(cfg, "split.protocol", f"'session' cuts sessions at idle gaps in time, but dataset {ds.name!r} has no "
                    "timestamps (its order is only a position); use protocol 'loo', or data with a time column")
    n_neg = sc.candidates.n_neg if sc.candidates is not None else None
    if n_neg is not None and n_neg >= ds.n_items:
        raise _fail(cfg, "split.candidates.n_neg", f"{n_neg} sampled negatives per example, but the catalogue has only "
                    f"{ds.n_items} items (at most {ds.n_items - 1} can be negatives)")
    n_rank = 1 + n_neg if n_neg is not None else ds.n_items
    big = [k for k in cfg.eval.ks if k >= n_rank]
    if big:
        what = f"{n_rank} candidates" if n_neg is not None else f"{n_rank} items of the catalogue"
        raise _fail(cfg, "eval.ks", f"cutoff {big[0]} is not below the {what} ranked per example "
                    f"(HR@{big[0]} would be 1 for any model)")


def make_split_checked(ds, cfg: RunConfig, make_split):
    """``make_split(ds, cfg)`` with its value errors named as config errors, then a split with examples checked."""
    try:
        split = make_split(ds, cfg)
    except (ConfigError, DataError):
        raise
    except ValueError as e:
        raise _fail(cfg, "split", f"protocol {cfg.split.protocol!r} on dataset {ds.name!r}: {e}") from None
    check_split(cfg, split, ds)
    return split


def check_split(cfg: RunConfig, split, ds) -> None:
    if len(split.test) == 0:
        info = ", ".join(f"{k}={v}" for k, v in split.info.items() if isinstance(v, (int, float))) or "no details"
        need = " (leave-one-out evaluates users with at least 3 interactions)" if split.protocol == "loo" else ""
        raise DataError(ds.name, f"no test example to evaluate after the {split.protocol!r} split{need}: "
                        f"{ds.n_users} users, {ds.n_interactions} interactions ({info}); lower the data filters or use more data")
