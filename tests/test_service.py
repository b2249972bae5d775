"""`llmrec serve`: every endpoint of the live service (uvicorn on a free loopback port) over a tiny trained
SASRec run, its answers against ``model.recommend`` for the same history, and bad requests -> 4xx naming the
field, never a 500."""

import concurrent.futures as cf
import json

import httpx
import numpy as np
import pytest
from _serving_runs import LiveServer, cached_run


@pytest.fixture(scope="module")
def art(tmp_path_factory, one_thread):
    from llmrec.pipelines.artifact import load_artifact

    return load_artifact(cached_run(tmp_path_factory.getbasetemp(), "sasrec"))


@pytest.fixture(scope="module")
def server(art):
    from llmrec.service.app import ServeSettings, create_app

    app = create_app(art, ServeSettings(max_history=20, max_k=25, max_body_bytes=4096, max_exclude=10))
    with LiveServer(app) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        yield c


def direct(art, users, histories, k):
    """Reference: the model's own recommend on the same histories, mapped to original item ids."""
    from llmrec.models.base import HistoryBatch

    idx, vals = art.model.recommend(HistoryBatch(users=np.asarray(users), histories=histories), k=k, mask_history=True)
    return [[(art.item_ids[i], float(v)) for i, v in zip(r.tolist(), vv.tolist())] for r, vv in zip(idx, vals)]


def got(resp):
    return [(x["item_id"], x["score"]) for x in resp["items"]]


def same(a, b):
    assert [i for i, _ in a] == [i for i, _ in b]
    assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)


def test_health_items_openapi(server, art):
    h = server.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "sasrec" and h["n_items"] == art.n_items == 30
    assert h["data_fingerprint"] == art.fingerprint["hash"]
    it = server.get("/items/i7").json()
    assert it["item_id"] == "i7" and it["title"] == "Title of item 7" and art.item_ids[it["index"]] == "i7"
    r = server.get("/items/nope")
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    schema = server.get("/openapi.json").json()
    assert {"/recommend", "/items/{item_id}", "/health", "/metrics"} <= set(schema["paths"])
    req = schema["components"]["schemas"]["RecommendRequest"]["properties"]
    assert req["k"]["maximum"] == 25 and req["history"]["anyOf"][0]["maxItems"] == 20


def test_recommend_matches_model(server, art):
    u = art.user_index["u3"]
    r = server.post("/recommend", json={"user": "u3", "k": 5}).json()
    assert r["known_user"] and r["history_length"] == len(art.histories[u]) and len(r["items"]) == 5
    same(got(r), direct(art, [u], [art.histories[u]], 5)[0])
    hist = ["i1", "i2", "i3"]
    r = server.post("/recommend", json={"history": hist, "k": 7}).json()
    same(got(r), direct(art, [-1], [np.array([art.item_index[x] for x in hist])], 7)[0])
    assert not {x["item_id"] for x in r["items"]} & set(hist)
    # unknown history items are reported, not silently dropped; numbers are accepted as ids
    r2 = server.post("/recommend", json={"history": hist + ["zzz", 12345], "k": 7}).json()
    assert r2["unknown_items"] == ["zzz", "12345"] and got(r2) == got(r)
    # exclude + keep the history
    ex = [x["item_id"] for x in r["items"][:2]]
    r3 = server.post("/recommend", json={"history": hist, "k": 7, "exclude": ex, "exclude_history": False}).json()
    ids = [x["item_id"] for x in r3["items"]]
    assert len(ids) == 7 and not set(ex) & set(ids)
    # a user plus extra history: the history is appended to the user's known sequence
    r4 = server.post("/recommend", json={"user": "u3", "history": ["i0"], "k": 3}).json()
    same(got(r4), direct(art, [u], [np.r_[art.histories[u], art.item_index["i0"]]], 3)[0])


def test_concurrent_requests_are_batched_and_correct(server, art):
    users = art.user_ids[:16]
    ref = {x: got(server.post("/recommend", json={"user": x, "k": 5}).json()) for x in users}
    with cf.ThreadPoolExecutor(8) as ex:
        res = list(ex.map(lambda x: (x, server.post("/recommend", json={"user": x, "k": 5}).json()), users * 2))
    for x, r in res:
        same(got(r), ref[x])
    text = server.get("/metrics").text
    assert 'llmrec_requests_total{method="POST",route="/recommend",status="200"}' in text
    assert "llmrec_request_seconds_bucket" in text and "llmrec_batch_size_count" in text


@pytest.mark.parametrize("body, field", [
    ({"user": "u3", "k": "ten"}, "k"),
    ({"user": "u3", "k": 0}, "k"),
    ({"user": "u3", "k": 26}, "k"),
    ({"user": "u3", "k": 2.5}, "k"),
    ({"history": "i1,i2"}, "history"),
    ({"history": [f"i{j % 30}" for j in range(21)]}, "history"),
    ({"user": {"id": 1}}, "user"),
    ({"user": "u3", "exclude": [f"i{j}" for j in range(11)]}, "exclude"),
    ({"user": "u3", "exclude_history": "no"}, "exclude_history"),
    ({"user": "u3", "colour": "red"}, "colour"),
    ({"k": 5}, "history"),
    ({"user": ""}, "user"),
    ({"history": []}, "history"),
])
def test_bad_requests_are_422_naming_the_field(server, body, field):
    r = server.post("/recommend", json=body)
    assert r.status_code == 422, r.text
    j = r.json()
    assert field in j["message"] and "Traceback" not in r.text


def test_other_bad_requests(server):
    r = server.post("/recommend", json={"user": "no-such-user"})
    assert r.status_code == 404 and "no-such-user" in r.json()["detail"] and "'user'" in r.json()["detail"]
    r = server.post("/recommend", json={"history": ["zzz", "yyy"]})  # nothing known to recommend from
    assert r.status_code == 404 and "'history'" in r.json()["detail"] and "zzz" in r.json()["detail"]
    r = server.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "body" in r.json()["message"]
    r = server.post("/recommend", content=json.dumps({"history": ["i1"] * 3000}).encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]
    assert server.get("/recommend").status_code == 405
    assert server.post("/recommend", json=[1, 2]).status_code == 422
    text = server.get("/metrics").text
    assert 'status="500"' not in text



def test_a_model_that_cannot_rank_the_catalogue_gets_501_and_the_cli_one_line(tmp_path_factory, monkeypatch, capsys):
    """LLM-TRSR only ranks sampled candidates: the service answers 501 with the model's explanation (not a 500),
    and `llmrec recommend` prints one error line with exit status 2 (not a traceback)."""
    from fastapi.testclient import TestClient

    from llmrec.cli import main
    from llmrec.models.base import UnsupportedOperation
    from llmrec.pipelines.artifact import load_artifact
    from llmrec.service.app import create_app

    run = cached_run(tmp_path_factory.getbasetemp(), "pop")
    art = load_artifact(run)

    def refuse(*a, **kw):
        raise UnsupportedOperation("this model ranks sampled candidates only")

    monkeypatch.setattr(type(art.model), "recommend", refuse)
    monkeypatch.setattr(type(art.model), "score", refuse)
    with TestClient(create_app(art)) as c:
        r = c.post("/recommend", json={"user": art.user_ids[0], "k": 5})
    assert r.status_code == 501 and "sampled candidates only" in r.json()["detail"]
    monkeypatch.setattr("sys.argv", ["llmrec", "recommend", str(run), "--user", str(art.user_ids[0])])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "sampled candidates only" in err and "Traceback" not in err
