"""Experiment tracking (TensorBoard, MLflow) and `llmrec tune` (Optuna, resumable), on tiny SASRec runs."""

import json
from pathlib import Path

import pytest

from llmrec.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "configs/tiny/sasrec-tiny.yaml"
SPACE = ROOT / "configs/spaces/tiny-sasrec.yaml"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the tiny configs' data paths are relative to the repository root


def test_tensorboard_event_files_load_with_tensorboards_reader(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llmrec.pipelines.run import run

    cfg = load_config(CFG, ["track.backend=tensorboard", "progress=false"])
    m = run(cfg, tmp_path / "run")
    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    assert {"train/loss", "train/lr", "valid/NDCG@10", "test/NDCG@10"} <= set(tags)
    losses = [e.value for e in ea.Scalars("train/loss")]
    assert len(losses) == cfg.train.epochs
    assert losses == pytest.approx([h["loss"] for h in m["fit_info"]["history"]], rel=1e-5)
    assert ea.Scalars("test/NDCG@10")[-1].value == pytest.approx(m["metrics"]["test"]["NDCG@10"], rel=1e-5)
    assert "config/text_summary" in ea.Tags()["tensors"]


def test_mlflow_run_in_a_local_store(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from llmrec.pipelines.run import run

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(CFG, ["track.backend=mlflow", f"track.mlflow_uri={store}", "track.experiment=tiny", "progress=false"])
    m = run(cfg, tmp_path / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    r = runs[0]
    assert r.data.params["params.hidden"] == "16" and r.data.params["model"] == "sasrec"
    assert r.data.metrics["final/test/NDCG_at_10"] == pytest.approx(m["metrics"]["test"]["NDCG@10"], rel=1e-6)
    hist = client.get_metric_history(r.info.run_id, "train/loss")
    assert [h.step for h in hist] == [1, 2, 3]


def test_space_errors_name_the_key(tmp_path):
    from llmrec.pipelines.tune import load_space

    def space(text):
        p = tmp_path / "s.yaml"
        p.write_text(text)
        return p

    with pytest.raises(ConfigError, match="params.hiden: not a key"):
        load_space(space("params.hiden: {type: int, low: 1, high: 2}"), CFG)
    with pytest.raises(ConfigError, match="train.lr: .*empty range"):
        load_space(space("train.lr: {type: float, low: 0.1, high: 0.01}"), CFG)
    with pytest.raises(ConfigError, match="params.hidden: the value 'big' is not valid"):
        load_space(space("params.hidden: {type: categorical, choices: [8, big]}"), CFG)
    with pytest.raises(ConfigError, match="params.dropout: the value 2.0 is not valid"):
        load_space(space("params.dropout: {type: float, low: 0.0, high: 2.0}"), CFG)
    with pytest.raises(ConfigError, match="train.lr: .*log range needs low > 0"):
        load_space(space("train.lr: {type: float, low: 0.0, high: 0.1, log: true}"), CFG)


def test_tune_three_trials_resumes_after_interruption(tmp_path):
    optuna = pytest.importorskip("optuna")
    from llmrec.pipelines.tune import tune

    out = tmp_path / "tune"
    first = tune(CFG, SPACE, trials=1, out=out, final=False)
    assert first["finished"] == 1
    # a process killed mid-trial leaves a RUNNING trial behind
    study = optuna.load_study(study_name="llmrec", storage=f"sqlite:///{out / 'study.db'}")
    study.ask()
    s = tune(CFG, SPACE, trials=3, out=out, final_overrides=["train.max_minutes=7.5"])
    states = [t["state"] for t in s["trials"]]
    assert states.count("FAIL") == 1 and s["finished"] == 3
    assert states.count("COMPLETE") + states.count("PRUNED") == 3
    assert s["trials"][0]["value"] == first["trials"][0]["value"]  # the first trial was not re-run
    assert all(t["seconds"] is not None for t in s["trials"] if t["state"] in ("COMPLETE", "PRUNED"))
    best = s["best"]
    done = [t for t in s["trials"] if t["state"] == "COMPLETE"]
    assert best["valid"] == max(t["value"] for t in done)
    # trials never evaluate the test split; the retrained best configuration is tested once
    n_complete = 0
    for d in (out / "trials").iterdir():
        if (d / "metrics.json").exists():  # pruned and failed trials stop before writing metrics
            n_complete += 1
            assert "test" not in json.loads((d / "metrics.json").read_text())["metrics"]
    assert n_complete == states.count("COMPLETE")
    assert "NDCG@10" in best["retrained"]["test"]
    cfg = load_config(out / "best.yaml")
    assert cfg.train.lr == pytest.approx(best["params"]["train.lr"])
    # --final-set reaches the final re-train (and best.yaml) only, never a trial
    assert cfg.train.max_minutes == 7.5
    assert load_config(out / "best" / "config.yaml").train.max_minutes == 7.5
    assert load_config(out / "trials" / "trial-0000" / "config.yaml").train.max_minutes != 7.5


def test_bad_final_override_fails_before_the_search(tmp_path):
    from llmrec.pipelines.tune import tune

    with pytest.raises(ConfigError, match="train.max_minutes"):
        tune(CFG, SPACE, trials=1, out=tmp_path / "t", final_overrides=["train.max_minutes=soon"])
    assert not (tmp_path / "t" / "study.db").exists()
