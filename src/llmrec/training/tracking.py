"""Experiment tracking: every run can log to TensorBoard or MLflow (``track.backend`` in the config; off by default).

What is logged, by both backends:

- the fully resolved config (TensorBoard: a text summary ``config``; MLflow: flattened params + ``config.yaml``
  artifact);
- per epoch (from the shared trainer's callback): ``train/loss``, ``train/lr``, ``train/seconds``,
  ``train/examples_per_s`` or ``train/steps_per_s`` when known, and every validation metric as ``valid/<metric>``;
- at the end: ``test/<metric>`` and ``valid/<metric>`` of the final evaluation, and the stage timings.

TensorBoard event files go to ``RUN/tensorboard`` (``torch.utils.tensorboard``; read them with TensorBoard or
``tensorboard.backend.event_processing.event_accumulator``). MLflow writes to ``track.mlflow_uri`` or, by default, a
local SQLite store ``RUN/../mlflow.db`` with artifacts in ``RUN/../mlartifacts`` (one store per runs folder, so the
runs of one sweep share it; ``mlflow ui --backend-store-uri sqlite:///RUNS/mlflow.db`` shows them). Nothing is sent over
the network unless the URI says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Tracker:
    """No-op base: ``log_config``, ``log_epoch`` (a trainer callback), ``log_final``, ``close``."""

    backend = "none"

    def log_config(self, cfg) -> None:
        pass

    def log_epoch(self, epoch: int, rec: dict) -> None:
        pass

    def log_final(self, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass

    # the trainer calls callbacks as f(model, epoch, record)
    def callback(self, lr: float | None = None):
        def cb(model, epoch: int, rec: dict) -> None:
            self.log_epoch(epoch, {**rec, **({"lr": lr} if lr is not None and "lr" not in rec else {})})

        return cb


def _epoch_scalars(rec: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ("loss", "lr", "seconds", "valid_seconds"):
        if rec.get(k) is not None:
            out[f"train/{k}"] = float(rec[k])
    if rec.get("steps") and rec.get("seconds"):
        out["train/steps_per_s"] = float(rec["steps"]) / float(rec["seconds"])
    if rec.get("examples") and rec.get("seconds"):
        out["train/examples_per_s"] = float(rec["examples"]) / float(rec["seconds"])
    for k, v in (rec.get("valid") or {}).items():
        out[f"valid/{k}"] = float(v)
    return out


def _final_scalars(metrics: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for split_name, ms in (metrics.get("metrics") or {}).items():
        for k, v in ms.items():
            if isinstance(v, (int, float)):
                out[f"{split_name}/{k}"] = float(v)
    for k, v in (metrics.get("seconds") or {}).items():
        out[f"seconds/{k}"] = float(v)
    return out


class TensorBoardTracker(Tracker):
    backend = "tensorboard"

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover - depends on the install
            raise RuntimeError("track.backend 'tensorboard' needs the tensorboard package: pip install -e .[track]") from e
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self._last_epoch = 0

    def log_config(self, cfg) -> None:
        text = cfg.to_yaml() if hasattr(cfg, "to_yaml") else str(cfg)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def log_epoch(self, epoch: int, rec: dict) -> None:
        for k, v in _epoch_scalars(rec).items():
            self.writer.add_scalar(k, v, epoch)
        self._last_epoch = epoch
        self.writer.flush()

    def log_final(self, metrics: dict) -> None:
        for k, v in _final_scalars(metrics).items():
            self.writer.add_scalar(k if not k.startswith("valid/") else "final_" + k, v, self._last_epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflowTracker(Tracker):
    backend = "mlflow"

    def __init__(self, uri: str, experiment: str, run_name: str, artifact_location: str | None = None):
        try:
            import mlflow
        except ImportError as e:  # pragma: no cover
            raise RuntimeError("track.backend 'mlflow' needs mlflow (mlflow-skinny): pip install -e .[track]") from e
        self.mlflow = mlflow
        self.uri = uri
        mlflow.set_tracking_uri(uri)
        client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment, artifact_location=artifact_location)
        self.run = mlflow.start_run(run_name=run_name, experiment_id=exp_id)
        self.run_id = self.run.info.run_id

    def log_config(self, cfg) -> None:
        flat = _flatten(cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else dict(cfg))
        self.mlflow.log_params({k: ("null" if v is None else str(v))[:500] for k, v in flat.items()})
        if hasattr(cfg, "to_yaml"):
            self.mlflow.log_text(cfg.to_yaml(), "config.yaml")

    def log_epoch(self, epoch: int, rec: dict) -> None:
        self.mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in _epoch_scalars(rec).items()}, step=epoch)

    def log_final(self, metrics: dict) -> None:
        self.mlflow.log_metrics({"final/" + k.replace("@", "_at_"): v for k, v in _final_scalars(metrics).items()})

    def close(self) -> None:
        self.mlflow.end_run()


def make_tracker(track_cfg, run_dir: str | Path, run_name: str | None = None) -> Tracker:
    """The tracker a run's ``track`` section asks for (a no-op one for ``backend: none``)."""
    run_dir = Path(run_dir)
    backend = getattr(track_cfg, "backend", "none") if track_cfg is not None else "none"
    if backend == "none":
        return Tracker()
    if backend == "tensorboard":
        return TensorBoardTracker(run_dir / "tensorboard")
    if backend == "mlflow":
        root = run_dir.resolve().parent
        root.mkdir(parents=True, exist_ok=True)
        uri = track_cfg.mlflow_uri or f"sqlite:///{root / 'mlflow.db'}"
        return MLflowTracker(uri, track_cfg.experiment, run_name or run_dir.name, artifact_location=(root / "mlartifacts").as_uri())
    raise ValueError(f"track.backend: unknown backend {backend!r} (none | tensorboard | mlflow)")
