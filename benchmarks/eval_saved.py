"""Evaluate a saved model directory on the seeded eval.sample_users sample of a config's split (the same users as the
GenRec rows). Usage: .venv/bin/python benchmarks/eval_saved.py CONFIG MODEL_DIR OUT_JSON (e.g. the SASRec row of the GenRec table:
configs/beauty/genrec.yaml runs/retrievers/beauty-sasrec/model benchmarks/results/genrec/beauty-sasrec-2000.json)"""
import json, sys, torch
torch.set_num_threads(1)
from llmrec.data.fingerprint import check_same_data, data_fingerprint
from llmrec.evaluation.evaluator import evaluate
from llmrec.models.base import Recommender
from llmrec.pipelines.run import load_split, sample_eval_users
from llmrec.utils.io import atomic_write_json

cfg, ds, split = load_split(sys.argv[1])
users = sample_eval_users(split, cfg.eval.sample_users, cfg.eval.sample_seed)
m = Recommender.load(sys.argv[2])
check_same_data(m.data_fingerprint, data_fingerprint(ds, cfg.data, split.protocol), sys.argv[2])
r = evaluate(m, split.test, ks=cfg.eval.ks, mask_history=cfg.eval.mask_history, progress=False)
atomic_write_json(sys.argv[3], {"config": sys.argv[1], "model_dir": sys.argv[2], "model": m.name, "id_order": cfg.data.id_order,
                                "mask_history": cfg.eval.mask_history, "eval_sample": {"users": int(len(users)), "seed": cfg.eval.sample_seed},
                                "n": r["n"], "metrics": {"test": r["metrics"]}, "seconds": r["seconds"]})
print(json.dumps({k: round(v, 4) for k, v in r["metrics"].items()}))
