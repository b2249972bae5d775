"""`llmrec recommend` / `export` / `artifact` on tiny trained runs: the CLI answers what the service answers,
unknown ids are reported, old runs get one clear error, and the run artefact never reloads the dataset."""

import json
import shutil
import subprocess
import sys

import httpx
import numpy as np
import polars as pl
import pytest
from _serving_runs import LiveServer, cached_run


def inproc(*args):
    """The CLI in this process (no second torch import); .returncode/.stdout/.stderr like subprocess."""
    from typer.testing import CliRunner

    from llmrec.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    r.returncode = r.exit_code
    return r


def cli(*args):
    """The real `python -m llmrec` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "llmrec", *map(str, args)], capture_output=True, text=True,
                          env={**__import__("os").environ, "LLMREC_PROGRESS": "0", "LLMREC_THREADS": "1"})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    base = tmp_path_factory.getbasetemp()
    return {m: cached_run(base, m) for m in ("pop", "sasrec")}


def test_cli_recommend_equals_service(runs):
    from llmrec.pipelines.artifact import load_artifact
    from llmrec.service.app import create_app

    run = runs["sasrec"]
    art = load_artifact(run)
    r = cli("recommend", run, "--history", "i4,i5,nope,i6", "--k", "6", "--json", "--exclude", "i9")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    r = cli("recommend", run, "--user", "u7", "--k", "4", "--json", "--keep-history")
    assert r.returncode == 0, r.stderr
    cu = json.loads(r.stdout)
    with LiveServer(create_app(art)) as s:
        with httpx.Client(base_url=s.url, timeout=30) as h:
            srv = h.post("/recommend", json={"history": ["i4", "i5", "nope", "i6"], "k": 6, "exclude": ["i9"]}).json()
            srvu = h.post("/recommend", json={"user": "u7", "k": 4, "exclude_history": False}).json()
    for a, b in ((c, srv), (cu, srvu)):
        assert [x["item_id"] for x in a["items"]] == [x["item_id"] for x in b["items"]]
        assert np.allclose([x["score"] for x in a["items"]], [x["score"] for x in b["items"]], atol=1e-5)
        assert {k: v for k, v in a.items() if k != "items"} == {k: v for k, v in b.items() if k != "items"}
    assert c["unknown_items"] == ["nope"] and "i9" not in [x["item_id"] for x in c["items"]]
    assert len(cu["items"]) == 4 and cu["known_user"]


def test_cli_table_warnings_and_errors(runs):
    run = runs["pop"]
    r = inproc("recommend", run, "--user", "u1", "--k", "3")
    assert r.returncode == 0, r.stderr
    assert "rank" in r.stdout and "Title of item" in r.stdout
    r = inproc("recommend", run, "--history", "i1,xx", "--k", "3")
    assert r.returncode == 0 and "xx" in r.stderr and "not in the catalogue" in r.stderr
    r = inproc("recommend", run, "--user", "nobody")
    assert r.returncode == 2 and "nobody" in r.stderr and "Traceback" not in r.stderr
    r = inproc("recommend", run)
    assert r.returncode == 2 and "--history" in r.stderr


def test_export_every_user(runs, tmp_path):
    from llmrec.pipelines.artifact import load_artifact
    from llmrec.service.engine import Query, recommend

    run = runs["sasrec"]
    out = tmp_path / "recs.parquet"
    r = inproc("export", run, "--out", out, "--k", "5", "--batch-size", "7")
    assert r.returncode == 0, r.stderr
    df = pl.read_parquet(out)
    art = load_artifact(run)
    assert df.height == 5 * art.n_users and df["user_id"].n_unique() == art.n_users
    one = df.filter(pl.col("user_id") == "u11").sort("rank")
    ref = recommend(art, Query(user="u11", k=5))
    assert one["item_id"].to_list() == [x["item_id"] for x in ref["items"]]
    assert np.allclose(one["score"].to_numpy(), [x["score"] for x in ref["items"]], atol=1e-5)
    # history items are excluded by default
    hist = {art.item_ids[i] for i in art.histories[art.user_index["u11"]]}
    assert not hist & set(one["item_id"].to_list())


def test_artifact_never_loads_the_dataset_and_old_runs_get_one_error(runs, tmp_path, monkeypatch):
    import llmrec.data.dataset as dsmod
    from llmrec.pipelines.artifact import ArtifactError, load_artifact

    run = runs["pop"]

    def boom(*a, **k):
        raise AssertionError("serving must not load the dataset")

    monkeypatch.setattr(dsmod, "load_dataset", boom)
    art = load_artifact(run)
    assert art.meta["history"].startswith("whole known sequence")
    # the stored history of a user is the whole sequence of the generated log
    log = pl.read_csv(run.parent / "data" / "log.csv").filter(pl.col("user_id") == "u5").sort("ts")
    assert [art.item_ids[i] for i in art.histories[art.user_index["u5"]]] == log["item_id"].to_list()
    monkeypatch.undo()

    old = tmp_path / "old"
    shutil.copytree(run, old)
    (old / "model" / "users.parquet").unlink()
    with pytest.raises(ArtifactError, match="llmrec artifact"):
        load_artifact(old)
    r = inproc("recommend", old, "--user", "u1")
    assert r.returncode == 2 and "re-run" in r.stderr.lower() and "Traceback" not in r.stderr
    r = inproc("artifact", old)  # backfill from config.yaml + data (fingerprint checked)
    assert r.returncode == 0, r.stderr
    assert load_artifact(old).histories[3].tolist() == art.histories[3].tolist()


def test_session_runs_keep_the_session_boundaries(tmp_path):
    """Session protocol: the stored history is cut into the split's sessions (held-out ones included)."""
    from llmrec.config import RunConfig
    from llmrec.data.dataset import load_dataset
    from llmrec.pipelines.artifact import load_artifact
    from llmrec.pipelines.run import make_split, run

    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,ts"]
    for u in range(40):
        t = 0
        for _ in range(rng.integers(2, 6)):
            t += 10000
            for _ in range(rng.integers(1, 5)):
                t += 60
                lines.append(f"u{u},i{rng.integers(0, 25)},{t}")
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    data = {"name": "generic", "generic": {"interactions": str(tmp_path / "log.csv"), "user_col": "user_id",
                                           "item_col": "item_id", "time_col": "ts"}, "cache_dir": str(tmp_path / "c")}
    cfg = RunConfig(data=data, model="pop", split={"protocol": "session", "session_targets": "all"},
                    eval={"ks": [5]}, threads=1, progress=False)
    run(cfg, tmp_path / "run")
    art = load_artifact(tmp_path / "run")
    split = make_split(load_dataset(cfg.data), cfg)
    last = {}
    for r, u in enumerate(split.test.users.tolist()):
        last[u] = r  # rows of a user are in order: the last one has the longest prefix
    assert last
    for u, r in last.items():
        want = [s.tolist() for s in split.test.sessions[r][:-1]]
        want.append(split.test.sessions[r][-1].tolist() + [int(split.test.targets[r])])
        assert [s.tolist() for s in art.sessions_of(u)] == want
    for u in range(art.n_users):
        assert sum(len(s) for s in art.sessions_of(u)) == len(art.histories[u])
