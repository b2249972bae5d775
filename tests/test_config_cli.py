import json
import subprocess
import sys

import pytest
import yaml

from llmrec.config import ConfigError, load_config


def write(tmp_path, d, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d))
    return p


def test_unknown_key_and_wrong_type_name_the_key(tmp_path):
    p = write(tmp_path, {"data": {"name": "beauty", "id_ordr": "random"}, "model": "pop"})
    with pytest.raises(ConfigError, match=r"data\.id_ordr: unknown key"):
        load_config(p)
    p = write(tmp_path, {"data": "beauty", "model": "itemknn", "params": {"k": "many"}})
    with pytest.raises(ConfigError, match=r"params\.k"):
        load_config(p)
    with pytest.raises(ConfigError, match="unknown model"):
        load_config(write(tmp_path, {"data": "beauty", "model": "nosuch"}))


def test_set_reaches_any_key_and_resolves_defaults(tmp_path):
    p = write(tmp_path, {"data": {"name": "beauty"}, "model": "pop"})
    c = load_config(p, ["model=itemknn", "data.id_order=original", "eval.ks=[5,10]", "params.k=7"])
    assert c.model == "itemknn" and c.data.id_order == "original" and c.eval.ks == [5, 10]
    assert c.params == {"k": 7, "shrink": 0.0, "recent": 0, "position_decay": 1.0}


def test_cli_run_end_to_end(tmp_path, shared_data):
    p = write(tmp_path, {"data": {"name": "ml-100k"}, "model": "pop", "eval": {"ks": [10]}})
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "llmrec", "run", str(p), "--out", str(out), "--set", "model=itemknn"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "itemknn" and m["dataset"] == "ml-100k" and m["mask_history"] is True
    assert 0 < m["metrics"]["test"]["HR@10"] < 1
    assert set(m["metrics"]) == {"valid", "test"}
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["params"]["k"] == 100
    assert (out / "model" / "model.safetensors").exists()


def test_cli_errors_are_one_line_messages(tmp_path):
    p = write(tmp_path, {"data": {"name": "beauty"}, "model": "pop", "bogus": 1})
    r = subprocess.run([sys.executable, "-m", "llmrec", "run", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "bogus: unknown key" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "llmrec", "data", "stats", "no-such-data"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no-such-data" in r.stderr


def test_cli_data_stats_beauty(shared_data):
    r = subprocess.run([sys.executable, "-m", "llmrec", "data", "stats", "beauty", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["users"], s["items"], s["interactions"]) == (22363, 12101, 198502)
    leak = s["id_leak_consecutive_diff1"]
    assert leak["original_ids"] == pytest.approx(0.0353, abs=5e-4)  # P5 numbering leaks order
    assert leak["current_ids"] < 0.001  # random remapping removes it


def test_every_shipped_config_validates():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(f for f in root.rglob("*.yaml") if "spaces" not in f.relative_to(root).parts)
    assert files
    for f in files:
        load_config(f)  # raises ConfigError naming the file and key


def test_every_shipped_search_space_validates(monkeypatch):
    """Each search space in configs/spaces names the config it tunes on its first line and validates against it."""
    from pathlib import Path

    from llmrec.pipelines.tune import load_space

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    spaces = sorted((root / "configs" / "spaces").glob("*.yaml"))
    assert spaces
    for sp in spaces:
        first = sp.read_text().splitlines()[0]
        assert first.startswith("# config: "), f"{sp}: the first line must be '# config: PATH'"
        load_space(sp, root / first.split(":", 1)[1].strip())


def test_cli_version_and_short_help():
    from typer.testing import CliRunner

    import llmrec
    from llmrec.cli import app

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"llmrec {llmrec.__version__}"
    for args in (["-h"], ["run", "-h"], ["data", "-h"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0 and "Usage" in r.output, args


LEGACY_SPLIT = {  # the split section of a config.yaml resolved before the split had one section per protocol
    "protocol": "loo", "session_gap": 1800, "session_task": "next-item", "session_targets": "last",
    "session_include_first": False, "session_dedup": False, "session_min_item_count": 0, "session_min_length": 1,
    "session_min_user_sessions": 1, "session_max_user_sessions": None, "session_min_eval_length": 2,
    "candidates": {"n_neg": 20, "strategy": "uniform", "seed": 0},
    "records": {"sizes": [10000, 1000, 1000]},
}


@pytest.mark.parametrize("protocol", ["loo", "session", "records"])
def test_one_split_section_per_protocol(tmp_path, protocol):
    """The resolved config lists the keys of its own protocol only, and loads back; so does an older config.yaml
    that lists every protocol's keys (run directories written before the split had a section per protocol)."""
    c = load_config(write(tmp_path, {"data": "beauty", "model": "pop", "split": {"protocol": protocol}}))
    keys = set(yaml.safe_load(c.to_yaml())["split"])
    assert "protocol" in keys and (("session_gap" in keys) == (protocol == "session"))
    assert (("records" in keys) == (protocol == "records")) and (("candidates" in keys) == (protocol != "session"))
    assert load_config(write(tmp_path, yaml.safe_load(c.to_yaml()), "again.yaml")).split == c.split
    old = load_config(write(tmp_path, {"data": "beauty", "model": "pop", "split": {**LEGACY_SPLIT, "protocol": protocol}},
                            "old.yaml"))
    assert old.split.protocol == protocol
    if protocol == "session":
        assert old.split.candidates is None and old.split.session_gap == 1800
    else:
        assert old.split.candidates.n_neg == 20  # the saved value, kept


def test_metrics_json_records_masking_as_done(tmp_path):
    """Sampled candidates are ranked as they are (never history-masked): metrics.json says so, whatever
    eval.mask_history says; the full ranking masks as configured."""
    from llmrec.pipelines.run import run

    csv = tmp_path / "log.csv"
    csv.write_text("user,item,timestamp\n" + "".join(f"{u},{(u * 7 + j * 3) % 30},{1000 * u + j}\n"
                                                     for u in range(20) for j in range(8)))
    base = {"data": {"name": "generic", "generic": {"interactions": str(csv)}}, "model": "pop",
            "eval": {"ks": [5], "mask_history": True}, "progress": False, "threads": 1}
    cases = [({}, "full", True), ({"eval.mask_history=false"}, "full", False),
             ({"split.candidates.n_neg=9"}, "sampled", False)]
    for i, (sets, protocol, masked) in enumerate(cases):
        m = run(load_config(write(tmp_path, base), sorted(sets)), tmp_path / f"run{i}")
        saved = json.loads((tmp_path / f"run{i}" / "metrics.json").read_text())
        assert m["eval_protocol"] == saved["eval_protocol"] == protocol
        assert m["mask_history"] is saved["mask_history"] is masked, (sets, saved["mask_history"])
