"""benchmarks/recbole_report.py: time to quality is computed from the epochs' curves and seconds, never typed in."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from recbole_report import time_to_quality  # noqa: E402


def _run(system, valid, spe, mask=False, **kw):
    return {"system": system, "dataset": "d", "model": "sasrec", "rc": 0, "mask_history": mask, "valid_ndcg10": valid,
            "seconds_per_epoch": spe, "valid_seconds": [0.0] * len(valid), **kw}


def test_ratio_levels_and_moving_average():
    rb = _run("recbole", [0.02, 0.05, 0.06, 0.07, 0.06], [100.0] * 5)
    lr = _run("llmrec", [0.03, 0.065, 0.071, 0.05], [2.0] * 4, test={"NDCG@10": 0.1},
              test_history_masked_same_model={"NDCG@10": 0.2})
    (t,) = time_to_quality([rb, lr])
    assert t["recbole_best_valid_ndcg10"] == 0.07 and t["recbole_seconds_to_best"] == 400.0
    assert t["llmrec_epoch_reaching_it"] == 3 and t["llmrec_seconds_to_reach"] == 6.0
    assert t["time_to_quality_ratio"] == 400.0 / 6.0
    assert t["test"]["llmrec_unmasked_model_tested_masked"] == {"NDCG@10": 0.2}
    lv = {x["fraction_of_recbole_best"]: x for x in t["levels"]}
    assert lv[0.8]["recbole_seconds"] == 300.0 and lv[0.8]["llmrec_seconds"] == 4.0  # 0.056: epoch 3 vs epoch 2
    assert lv[1.0]["ratio"] == t["time_to_quality_ratio"]
    sm = t["smoothed"]  # 3-epoch means: RecBole (0.06 at epoch 4 ... 0.0633 at epoch 5); llmrec 0.0553, 0.062
    assert sm["recbole_epoch"] == 5 and sm["llmrec_epoch_reaching_it"] is None and sm["ratio"] is None


def test_never_reached_is_null_not_a_number():
    rb = _run("recbole", [0.05, 0.08], [10.0, 10.0])
    lr = _run("llmrec", [0.07, 0.075], [1.0, 1.0])
    (t,) = time_to_quality([rb, lr, _run("llmrec", [0.09], [1.0], mask=True)])  # a masked run is never compared
    assert t["time_to_quality_ratio"] is None and t["llmrec_best_valid_ndcg10"] == 0.075


def test_train_settings_label_the_run_and_pick_its_own_masked_twin():
    from recbole_report import ttq_table

    rb = _run("recbole", [0.05, 0.08], [10.0, 10.0])
    fp32 = _run("llmrec", [0.09], [1.0], llmrec_params={"block": "bert"})
    bf16 = _run("llmrec", [0.085], [0.5], llmrec_params={"block": "bert"}, llmrec_train={"mixed_precision": "bf16"})
    twins = [_run("llmrec", [0.1], [1.0], mask=True, llmrec_params={"block": "bert"}, test={"NDCG@10": 0.3}),
             _run("llmrec", [0.1], [1.0], mask=True, llmrec_params={"block": "bert"}, llmrec_train={"mixed_precision": "bf16"},
                  test={"NDCG@10": 0.4})]
    a, b = time_to_quality([rb, fp32, bf16, *twins])
    assert a["test"]["llmrec_masked"] == {"NDCG@10": 0.3} and b["test"]["llmrec_masked"] == {"NDCG@10": 0.4}
    assert b["llmrec_train"] == {"mixed_precision": "bf16"} and b["time_to_quality_ratio"] == 20.0 / 0.5
    rows = ttq_table({"time_to_quality": [a, b]}).splitlines()[2:]
    assert "train.mixed_precision=bf16" not in rows[0] and "block=bert, train.mixed_precision=bf16" in rows[1]
