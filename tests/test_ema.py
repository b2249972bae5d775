"""train.ema: an exponential moving average of the weights, validated and kept as the model; training unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import fit_until_crash, make_raw, rng_sequences
from llmrec.config import ConfigError, load_config
from llmrec.data.dataset import DataConfig, prepare_raw
from llmrec.data.splits import leave_one_out
from llmrec.models import build_model
from llmrec.pipelines.run import run

TINY = {"hidden": 16, "max_len": 10, "loss": "ce", "dropout": 0.2}
KW = dict(batch_size=8, lr=0.01, patience=None, progress=False)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    return leave_one_out(prepare_raw(make_raw(rng_sequences(n_users=40, n_items=30, seed=3)), DataConfig(name="toy")))


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.net.named_parameters()}


def _watch(monkeypatch, model, script):
    """Record the raw weights before every training step (``loss`` is called once per step) and the weights the
    evaluator sees at each validation; the validation metric follows ``script``."""
    import llmrec.evaluation.evaluator as ev

    before_step, seen = [], []
    loss = model.loss
    model.loss = lambda batch: (before_step.append(_weights(model)), loss(batch))[1]
    values = iter(script)

    def fake_evaluate(m, eval_set, **kw):
        seen.append(_weights(m))
        v = next(values)
        return {"metrics": {"HR@10": v, "NDCG@10": v}, "n": len(eval_set), "seconds": 0.0}

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    return before_step, seen


def _reference_ema(raw_after_steps: list[dict], decay: float) -> list[dict]:
    """The documented average, step by step: e_1 = w_1, e_n = e_{n-1} + (1 - d_n)(w_n - e_{n-1}),
    d_n = min(decay, (1 + n) / (10 + n))."""
    out, e = [], None
    for n, w in enumerate(raw_after_steps, start=1):
        if e is None:
            e = {k: v.double() for k, v in w.items()}
        else:
            d = min(decay, (1.0 + n) / (10.0 + n))
            e = {k: e[k] + (1 - d) * (w[k].double() - e[k]) for k in e}
        out.append(e)
    return out


def test_validation_sees_the_documented_average_and_the_model_keeps_the_best_one(toy, monkeypatch, tmp_path):
    m = build_model("sasrec", TINY)
    raw_at_epoch = {}
    before, seen = _watch(monkeypatch, m, [0.1, 0.3, 0.2])  # best: epoch 2 of 3
    m.fit(toy, run_dir=tmp_path, epochs=3, ema=0.9, callbacks=[lambda mod, e, i: raw_at_epoch.update({e: _weights(mod)})], **KW)
    steps = len(before) // 3
    raw_after = before[1:] + [raw_at_epoch[3]]  # the weights before step n + 1 are those after step n
    ref = _reference_ema(raw_after, 0.9)
    for epoch in (1, 2, 3):
        for k, v in seen[epoch - 1].items():
            torch.testing.assert_close(v.double(), ref[epoch * steps - 1][k], atol=1e-5, rtol=1e-5, msg=k)
        # the callbacks (and training) see the raw weights, which the average differs from
        assert any(not torch.equal(v, raw_at_epoch[epoch][k]) for k, v in seen[epoch - 1].items())
    assert m.fit_info["best_epoch"] == 2 and m.fit_info["ema"] == 0.9
    for k, v in _weights(m).items():  # restored from the best checkpoint: the average of epoch 2
        assert torch.equal(v, seen[1][k]), k


@pytest.mark.parametrize("script", [[0.1, 0.3, 0.2], [0.1, 0.2, 0.3]], ids=["best-earlier", "best-last"])
def test_without_a_run_directory_the_same_average_is_kept(toy, monkeypatch, script):
    m = build_model("sasrec", TINY)
    _, seen = _watch(monkeypatch, m, script)
    m.fit(toy, epochs=3, ema=0.9, **KW)
    best = script.index(max(script))
    for k, v in _weights(m).items():
        assert torch.equal(v, seen[best][k]), k


def test_training_follows_the_same_raw_trajectory(toy):
    plain = build_model("sasrec", TINY).fit(toy, epochs=3, **KW)
    averaged = build_model("sasrec", TINY).fit(toy, epochs=3, ema=0.95, **KW)
    assert [h["loss"] for h in averaged.fit_info["history"]] == [h["loss"] for h in plain.fit_info["history"]]
    assert averaged.fit_info["history"][-1]["valid"] != plain.fit_info["history"][-1]["valid"]


def test_resume_carries_the_average(toy, tmp_path):
    kw = dict(epochs=3, ema=0.9, **KW)
    ref = build_model("sasrec", TINY).fit(toy, run_dir=tmp_path / "ref", **kw)
    fit_until_crash(build_model("sasrec", TINY), toy, tmp_path / "cut", 2, **kw)
    again = build_model("sasrec", TINY).fit(toy, run_dir=tmp_path / "cut", resume=True, **kw)
    assert again.fit_info["resumed_from_epoch"] == 2
    assert [h["valid"] for h in again.fit_info["history"]] == [h["valid"] for h in ref.fit_info["history"]]
    for k, v in ref.state_tensors().items():
        assert torch.equal(v, again.state_tensors()[k]), k


def test_ema_is_checked_when_the_config_loads_and_against_the_model(tmp_path: Path):
    with pytest.raises(ConfigError, match="train.ema"):
        load_config(None, ["data.name=ml-100k", "model=sasrec", "train.ema=1.0"])
    f = tmp_path / "log.csv"
    f.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rng_sequences(n_users=20, n_items=15, seed=4)))
    sets = ["data.name=generic", f"data.generic.interactions={f}", "data.generic.user_col=user", "data.generic.item_col=item",
            "data.generic.time_col=timestamp", "model=genrec", "train.ema=0.99", "progress=false"]
    with pytest.raises(ConfigError, match="train.ema: model 'genrec' does not train with the shared epoch trainer"):
        run(load_config(None, sets), tmp_path / "run")


def test_ema_through_accelerate_and_bf16(toy):
    pytest.importorskip("accelerate")
    from accelerate import Accelerator

    plain = build_model("sasrec", TINY).fit(toy, epochs=2, ema=0.9, **KW)
    acc = build_model("sasrec", TINY).fit(toy, epochs=2, ema=0.9, accelerator=Accelerator(cpu=True), **KW)
    for k, v in plain.state_tensors().items():  # the accelerated optimizer carries the average the same way
        torch.testing.assert_close(v, acc.state_tensors()[k], atol=1e-5, rtol=1e-5, msg=k)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # one accelerator state per process: let the bf16 fit make its own
    bf16 = build_model("sasrec", TINY).fit(toy, epochs=2, ema=0.9, mixed_precision="bf16", **KW)
    AcceleratorState._reset_state(True)
    assert bf16.fit_info["mixed_precision"] == "bf16" and bf16.fit_info["ema"] == 0.9
    assert all(v.dtype == torch.float32 for v in bf16.state_tensors().values())  # autocast: float32 weights
