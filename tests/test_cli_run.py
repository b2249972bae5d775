"""`llmrec run` as a new user meets it: a results table that fits the terminal, help that lists the models, a guarded
run directory, one line on Ctrl-C, hints in YAML, and `data list` saying what ml-1m holds."""

import io
import json
import os
import re
from pathlib import Path

import pytest
import typer
import yaml
from _serving_runs import write_generic_data
from rich.console import Console
from typer.testing import CliRunner

from llmrec.cli import app

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path, model="pop", name="a-rather-long-run-name-for-a-small-table", **train) -> Path:
    data = write_generic_data(tmp_path / "data")
    cfg = {"name": name, "data": {**data, "cache_dir": str(tmp_path / "cache")}, "model": model,
           "eval": {"ks": [1, 5, 10, 20]}, "threads": 1, "progress": False, "seed": 1}
    if model == "sasrec":
        cfg["params"] = {"max_len": 8, "hidden": 16, "blocks": 1, "heads": 1, "loss": "ce"}
        cfg["train"] = {"epochs": 3, "batch_size": 16, "patience": None, **train}
    p = tmp_path / f"{model}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pop_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-run")
    cfg = _config(tmp)
    r = _invoke("run", cfg, "--out", tmp / "run")
    assert r.exit_code == 0, r.output
    return cfg, tmp / "run", r.output


@pytest.mark.parametrize("columns", [80, 100])
def test_results_table_fits_the_terminal(pop_run, monkeypatch, columns):
    from llmrec.cli import common, runs

    monkeypatch.setenv("COLUMNS", str(columns))
    assert common._width() is None  # $COLUMNS is obeyed; 100 columns when printing into a pipe
    buf = io.StringIO()
    monkeypatch.setattr(runs, "console", Console(file=buf))
    m = json.loads((pop_run[1] / "metrics.json").read_text())
    runs.print_table([("a-rather-long-run-name-for-a-small-table", m, pop_run[1]), ("pop-2", m, pop_run[1])])
    out = buf.getvalue()
    assert max(len(line) for line in out.splitlines()) <= columns
    assert "…" not in out  # no number cut to "0.…"
    for k in runs.TABLE_METRICS:
        assert k in out and f"{m['metrics']['test'][k]:.4f}" in out
    assert "more metrics in each run's metrics.json, or with --all-metrics" in out
    buf = io.StringIO()
    monkeypatch.setattr(runs, "console", Console(file=buf))
    runs.print_table([("pop", m, pop_run[1])], all_metrics=True)  # one row per metric: every metric, still narrow
    out = buf.getvalue()
    assert all(k in out for k in m["metrics"]["test"]) and max(len(line) for line in out.splitlines()) <= columns


def test_run_help_lists_the_models_and_the_config_reference():
    from llmrec.models import available_models

    r = _invoke("run", "--help")
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert all(re.search(rf"\b{m}\b", text) for m in available_models())
    assert "README.md, section 'Configs'" in text and "docs/training.md" in text


def test_an_existing_run_directory_needs_resume_or_overwrite(pop_run):
    cfg, d, first = pop_run
    assert "HR@10" in first and "fit s" in first
    r = _invoke("run", cfg, "--out", d)
    assert r.exit_code == 2 and "Traceback" not in r.output
    err = [line for line in r.output.splitlines() if line.strip()]
    assert len(err) == 1 and "already holds a finished run" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    before = (d / "metrics.json").stat().st_mtime_ns
    r = _invoke("run", cfg, "--out", d, "--resume")  # finished: shown, not re-run
    assert r.exit_code == 0 and "finished before; not re-run" in r.output
    assert (d / "metrics.json").stat().st_mtime_ns == before
    (d / "stray.txt").write_text("x")
    r = _invoke("run", cfg, "--out", d, "--overwrite")
    assert r.exit_code == 0, r.output
    assert not (d / "stray.txt").exists() and (d / "metrics.json").exists()
    plain = d.parent / "not-a-run"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    r = _invoke("run", cfg, "--out", plain, "--overwrite")  # never deletes a directory llmrec did not make
    assert r.exit_code == 2 and "not a run directory" in r.output and (plain / "notes.txt").exists()
    assert _invoke("run", cfg, "--out", d, "--resume", "--overwrite").exit_code == 2


def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path, monkeypatch):
    """Interrupted after the checkpoint of epoch 2: one line naming it and the resume command; no metrics.json;
    the command it prints then finishes the run."""
    import llmrec.pipelines.run as pr

    cfg = _config(tmp_path, model="sasrec", name="tiny-sas")
    real = pr.run

    def interrupted(cfg_, out, resume=False, **kw):
        def stop(model, epoch, record):
            if epoch == 2:
                raise KeyboardInterrupt

        return real(cfg_, out, resume=resume, callbacks=[stop])

    monkeypatch.setattr(pr, "run", interrupted)
    d = tmp_path / "run"
    r = _invoke("run", cfg, "--out", d)
    assert r.exit_code == 130
    lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in r.output
    assert "keeps the checkpoint of epoch 2" in lines[0] and f"resume with: llmrec run {cfg} --out {d} --resume" in lines[0]
    assert (d / "config.yaml").exists() and not (d / "metrics.json").exists()  # does not look finished
    monkeypatch.setattr(pr, "run", real)
    r = _invoke("run", cfg, "--out", d, "--resume")
    assert r.exit_code == 0, r.output
    m = json.loads((d / "metrics.json").read_text())
    assert m["fit_info"]["resumed_from_epoch"] == 2 and m["fit_info"]["epochs_run"] == 3


def test_interrupted_before_a_checkpoint_and_stale_results_removed(tmp_path):
    from llmrec.cli.runs import interrupted_line
    from llmrec.pipelines.run import _unmark_finished

    d = tmp_path / "run"
    (d / "next-session").mkdir(parents=True)
    for f in ("config.yaml", "metrics.json", "next-session/metrics.json"):
        (d / f).write_text("{}")
    line = interrupted_line(Path("c.yaml"), ["model=pop"], d)
    assert "nothing to resume" in line and "llmrec run c.yaml --set model=pop --out" in line and "--overwrite" in line
    _unmark_finished(d)  # what a (re)started run does first: a failure later leaves no finished-looking directory
    assert not list(d.rglob("metrics.json")) and (d / "config.yaml").exists()


def test_hints_speak_yaml_not_python(tmp_path):
    r = _invoke("data", "stats", "no-such-data")
    assert r.exit_code == 2
    assert "data: {name: generic, generic: {interactions: FILE" in r.output
    assert "load_generic(" not in r.output and "=None" not in r.output and "=..." not in r.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: nosuch}\nmodel: pop\n")
    r = _invoke("run", cfg, "--out", tmp_path / "r")
    assert r.exit_code == 2 and "data.name: unknown dataset 'nosuch'" in r.output and "load_generic(" not in r.output
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_python_calls_are_not_offered_to_cli_users():
    """No message in the CLI's own modules tells a user to call Python or pass key=None."""
    for f in sorted((REPO / "src" / "llmrec" / "cli").glob("*.py")):
        for s in re.findall(r"f?\"[^\"\n]*\"", f.read_text()):
            assert not re.search(r"\b\w+=(None|True|False)\b|\b(load|make|build)_\w+\(", s), (f.name, s)


def test_data_list_says_what_ml_1m_holds():
    r = _invoke("data", "list")
    assert r.exit_code == 0
    line = next(x for x in r.output.splitlines() if x.startswith("ml-1m "))
    assert "2,999" in line and "timestamps" in line and "6,040" in line and "ml-1m-pairs" in line
    readme = (REPO / "README.md").read_text()
    assert "2,999" in readme and "6,040" in readme and "ml-1m-pairs" in readme


def test_setup_script_says_what_it_is_doing():
    s = (REPO / "scripts" / "setup.sh").read_text()
    installs = [line for line in s.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and not [line for line in installs if " -q" in line]  # pip's progress is shown
    steps = re.findall(r'^\s*step "([^"]+)"', s, flags=re.M)
    assert len(steps) >= len(installs), steps  # a line per step before it runs


def test_only_rank_0_of_a_launched_run_guards_the_directory(tmp_path, monkeypatch):
    """Under torchrun / accelerate launch every process runs `llmrec run --out D`: the others find D made."""
    from llmrec.cli.runs import check_run_dir

    (tmp_path / "config.yaml").write_text("x")
    monkeypatch.setenv("RANK", "1")
    check_run_dir(tmp_path, resume=False, overwrite=False)  # no error
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(typer.Exit):
        check_run_dir(tmp_path, resume=False, overwrite=False)


def test_missing_retriever_is_one_line_before_any_tuning(tmp_path):
    """A PALR config whose retriever directory holds no model (and no config to train one) stops at the start of
    fit with one line naming the key -- not after tuning, and not with a traceback."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMREC_PROGRESS": "0", "LLMREC_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "llmrec", "run", "configs/tiny/palr-tiny.yaml", "--set",
                           f"params.retriever={tmp_path / 'nothing'}", "--set", "params.retriever_config=null",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "params.retriever" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "tuning").exists()  # stopped before the tuning stage
