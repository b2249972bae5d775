"""llmrec.llm.generation: batched generation = model.generate, the disk cache, resume, constraints, truncation,
seeded sampling and 2-process data parallelism (torchrun, gloo)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("transformers")

from llmrec.llm import tiny  # noqa: E402
from llmrec.llm.backbones import load_backbone  # noqa: E402
from llmrec.llm.decoding import ListConstraint  # noqa: E402
from llmrec.llm.generation import GenerationError, GenerationSettings, generate  # noqa: E402

TEXTS = [
    "red matte lipstick", "blue nail polish long lasting shiny finish", "shampoo", "rose perfume 50 ml",
    "black waterproof mascara for extra long lashes and volume", "the quick brown fox jumps over the lazy dog",
] * 5
PROMPTS = ["red lipstick and", "blue", "shampoo rose perfume black waterproof mascara for long lashes", "nail polish",
           "the quick brown fox", "perfume", "lazy dog jumps over red", "mascara volume"]
SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "initializer_range": 0.2}  # not copying the last token

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen_models")
    return {
        "tiny-llama": tiny.build_tiny("tiny-llama", root / "llama", TEXTS, vocab_size=300, overrides=SMALL, seed=3),
        "tiny-bart": tiny.build_tiny("tiny-bart", root / "bart", TEXTS, vocab_size=300, seed=3,
                                     overrides={"d_model": 32, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "init_std": 0.2}),
    }


@pytest.fixture(scope="module")
def bb(model_dirs):
    return load_backbone(str(model_dirs["tiny-llama"]), head=True)  # loaded by path, as a user's 7B directory


def _reference(backbone, text, max_new_tokens, **kw):
    """Plain model.generate on one prompt, cut at EOS."""
    tok = backbone.tokenizer
    enc = tok(text, return_tensors="pt")
    out = backbone.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id, **kw)
    new = out[0, 1:] if backbone.kind == "seq2seq" else out[0, enc["input_ids"].shape[1]:]
    ids = new.tolist()
    return ids[:ids.index(tok.eos_token_id)] if tok.eos_token_id in ids else ids


class _Count:
    """Counts the prompt rows that reach model.generate."""

    def __init__(self, model):
        self.model, self.orig, self.rows = model, model.generate, 0

    def __enter__(self):
        def counted(*a, **kw):
            self.rows += kw["input_ids"].shape[0]
            return self.orig(*a, **kw)

        self.model.generate = counted
        return self

    def __exit__(self, *exc):
        del self.model.generate


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-bart"])
def test_greedy_equals_model_generate(model_dirs, arch):
    backbone = load_backbone(str(model_dirs[arch]), head=True)
    res = generate(backbone, PROMPTS, GenerationSettings(max_new_tokens=6, batch_size=3), progress=False)
    assert res.n_prompts == len(PROMPTS) and res.n_cached == 0 and res.n_generated == len(PROMPTS)
    tok = backbone.tokenizer
    for p, ids, text in zip(PROMPTS, res.token_ids, res.texts):
        ref = _reference(backbone, p, 6)
        assert ids == ref, p
        assert tok.eos_token_id not in ids and tok.pad_token_id not in ids
        assert text == tok.decode(ref, skip_special_tokens=True).strip()
    assert res.generated_tokens == sum(map(len, res.token_ids))
    assert res.prompt_tokens == sum(len(tok(p)["input_ids"]) for p in PROMPTS)
    # beams: the best beam of model.generate(num_beams=3)
    beams = generate(backbone, PROMPTS[:4], GenerationSettings(max_new_tokens=5, batch_size=4, num_beams=3))
    assert beams.token_ids == [_reference(backbone, p, 5, num_beams=3) for p in PROMPTS[:4]]


def test_cache_rerun_reads_everything_and_keys_separate_outputs(bb, tmp_path):
    s = GenerationSettings(max_new_tokens=5, batch_size=3, chunk_size=3)
    first = generate(bb, PROMPTS, s, cache_dir=tmp_path, template_key="t@v1")
    assert first.n_cached == 0 and first.n_generated == len(PROMPTS)
    files = list((tmp_path / "generation").glob("*/chunk-*.jsonl"))
    assert len(files) == 3  # 8 prompts in chunks of 3
    with _Count(bb.model) as c:
        again = generate(bb, PROMPTS, s.model_copy(update={"batch_size": 2, "chunk_size": 5}), cache_dir=tmp_path,
                         template_key="t@v1")
        assert c.rows == 0  # no model call: batch_size/chunk_size are not part of the key
    assert again.n_cached == len(PROMPTS) and again.n_generated == 0
    assert again.texts == first.texts and again.token_ids == first.token_ids
    assert again.prompt_tokens == first.prompt_tokens and again.generated_tokens == first.generated_tokens
    # anything that may change outputs is a miss: settings, template, per-prompt keys, model key
    for kw in ({"settings": s.model_copy(update={"max_new_tokens": 4})}, {"template_key": "t@v2"},
               {"keys": ["a"] * len(PROMPTS)}, {"model_key": "tuned"}):
        with _Count(bb.model) as c:
            r = generate(bb, PROMPTS, kw.pop("settings", s), cache_dir=tmp_path,
                         **{"template_key": "t@v1", **kw})
            assert r.n_cached == 0 and c.rows == len(PROMPTS), kw
    with _Count(bb.model) as c:  # sampling settings do not matter to greedy decoding
        generate(bb, PROMPTS, s.model_copy(update={"temperature": 0.5, "seed": 9}), cache_dir=tmp_path, template_key="t@v1")
        assert c.rows == 0
    # a LoRA-wrapped model (same base fingerprint) never reads the base model's outputs
    lora = load_backbone(str(bb.path), head=True, lora={"r": 2, "alpha": 4, "dropout": 0.0})
    assert lora.fingerprint == bb.fingerprint
    assert generate(lora, PROMPTS, s, cache_dir=tmp_path, template_key="t@v1").n_cached == 0
    lora.info["trainable_hash"] = "tuned-1"  # what llmrec.llm.tuning sets after training: a new key again
    assert generate(lora, PROMPTS, s, cache_dir=tmp_path, template_key="t@v1").n_cached == 0
    assert generate(lora, PROMPTS, s, cache_dir=tmp_path, template_key="t@v1").n_cached == len(PROMPTS)
    empty = generate(bb, [], s, cache_dir=tmp_path)
    assert empty.texts == [] and empty.n_prompts == 0


def test_interrupted_run_resumes_without_regenerating(bb, tmp_path):
    s = GenerationSettings(max_new_tokens=5, batch_size=2, chunk_size=2)

    def stop_after_first(done, total):
        raise KeyboardInterrupt  # a killed run: the first chunk is on disk, nothing else

    with pytest.raises(KeyboardInterrupt):
        generate(bb, PROMPTS, s, cache_dir=tmp_path, on_chunk=stop_after_first)
    d = next((tmp_path / "generation").iterdir())
    (d / "chunk-garbage.jsonl").write_text('{"k": "x", "text": 1}\nnot json\n')  # a corrupt chunk file: ignored
    with _Count(bb.model) as c, pytest.warns(UserWarning, match="2 unreadable or corrupt record"):
        res = generate(bb, PROMPTS, s, cache_dir=tmp_path)
    assert res.n_cached == 2 and res.n_generated == len(PROMPTS) - 2 and c.rows == len(PROMPTS) - 2
    assert res.texts == generate(bb, PROMPTS, s).texts  # same as an uninterrupted run without a cache


def test_corrupt_cache_records_are_generated_again(bb, tmp_path):
    """Each cached record carries a checksum: a changed output or a torn line is regenerated, the rest is read back."""
    s = GenerationSettings(max_new_tokens=5, batch_size=4, chunk_size=4)
    first = generate(bb, PROMPTS, s, cache_dir=tmp_path)
    f = sorted((tmp_path / "generation").glob("*/chunk-*.jsonl"))[0]
    lines = f.read_text().splitlines()
    rec = json.loads(lines[0])
    assert isinstance(rec.get("c"), str)
    rec["text"] = rec["text"] + " tampered"  # valid JSON, wrong content: only the checksum can tell
    lines[0] = json.dumps(rec)
    lines[1] = lines[1][: len(lines[1]) // 2]  # a torn line
    f.write_text("\n".join(lines) + "\n")
    with _Count(bb.model) as c, pytest.warns(UserWarning, match="2 unreadable or corrupt record"):
        again = generate(bb, PROMPTS, s, cache_dir=tmp_path)
    assert c.rows == 2 and again.n_cached == len(PROMPTS) - 2 and again.n_generated == 2
    assert again.texts == first.texts and again.token_ids == first.token_ids


def _item_constraints(tok, n_prompts, max_items=3):
    items = ["lipstick", "shampoo", "mascara", "perfume", "nail polish"]
    seqs = [tok(" " + w, add_special_tokens=False)["input_ids"] for w in items]
    sep = tok(" ;", add_special_tokens=False)["input_ids"]
    return [ListConstraint(seqs, list(range(len(items))), sep=sep, end=[tok.eos_token_id], max_items=max_items)
            for _ in range(n_prompts)]


@pytest.mark.parametrize("beams", [1, 3])
def test_list_constraint_only_candidates_no_duplicates(bb, tmp_path, beams):
    cons = _item_constraints(bb.tokenizer, len(PROMPTS))
    cons[1] = None  # an unconstrained prompt in a constrained batch
    s = GenerationSettings(max_new_tokens=40, batch_size=4, num_beams=beams)
    with pytest.raises(GenerationError, match="need keys"):
        generate(bb, PROMPTS, s, constraints=cons, cache_dir=tmp_path)
    res = generate(bb, PROMPTS, s, constraints=cons, cache_dir=tmp_path, keys=["cands-1"] * len(PROMPTS))
    for i, (c, ids) in enumerate(zip(cons, res.token_ids)):
        if c is None:
            continue
        got = c.parse(ids)
        assert len(got) == 3 and len(set(got)) == 3, (i, ids)
        assert c.allowed(ids) == [bb.tokenizer.eos_token_id]  # complete list; the EOS itself is not returned
    free = generate(bb, PROMPTS, s)
    assert res.token_ids[1] == free.token_ids[1]  # the unconstrained row is untouched


def test_truncation_keeps_bos_and_last_tokens(bb):
    tok = bb.tokenizer
    lens = [len(tok(p)["input_ids"]) for p in PROMPTS]
    s = GenerationSettings(max_new_tokens=4, batch_size=3, max_prompt_tokens=5)
    res = generate(bb, PROMPTS, s)
    assert res.n_truncated == sum(n > 5 for n in lens) > 0
    assert res.prompt_tokens == sum(min(n, 5) for n in lens)
    for p, ids in zip(PROMPTS, res.token_ids):
        full = tok(p)["input_ids"]
        cut = full if len(full) <= 5 else [full[0]] + full[-4:]
        assert cut[0] == tok.bos_token_id
        out = bb.model.generate(input_ids=torch.tensor([cut]), attention_mask=torch.ones(1, len(cut), dtype=torch.long),
                                max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)[0, len(cut):].tolist()
        assert ids == (out[:out.index(tok.eos_token_id)] if tok.eos_token_id in out else out)


def test_out_of_memory_halves_the_batch(bb, monkeypatch):
    from llmrec.llm import generation

    ref = generate(bb, PROMPTS, GenerationSettings(max_new_tokens=4, batch_size=1))
    orig, sizes = generation._Runner.run, []

    def small_only(self, rows, seeds, cons):
        sizes.append(len(rows))
        if len(rows) > 2:
            raise torch.cuda.OutOfMemoryError("fake")
        return orig(self, rows, seeds, cons)

    monkeypatch.setattr(generation._Runner, "run", small_only)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    res = generate(bb, PROMPTS, GenerationSettings(max_new_tokens=4, batch_size=8))
    assert res.token_ids == ref.token_ids and max(sizes) == 8 and sizes.count(2) == 4


def test_seeded_sampling_does_not_depend_on_batches(bb):
    s = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=1.5, top_k=50, seed=7, batch_size=3)
    a = generate(bb, PROMPTS, s)
    b = generate(bb, PROMPTS[::-1], s.model_copy(update={"batch_size": 1}))
    assert a.token_ids == b.token_ids[::-1]
    greedy = generate(bb, PROMPTS, GenerationSettings(max_new_tokens=8))
    other = generate(bb, PROMPTS, s.model_copy(update={"seed": 8}))
    assert a.token_ids != greedy.token_ids and a.token_ids != other.token_ids
    with pytest.raises(ValueError, match="beam sampling"):
        GenerationSettings(do_sample=True, num_beams=2)
    with pytest.raises(ValueError):
        GenerationSettings(batch_sizes=3)  # extra keys are rejected


_DP_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from llmrec.llm.backbones import load_backbone
from llmrec.llm.generation import GenerationSettings, generate
model_dir, cache, out, prompts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
bb = load_backbone(model_dir, head=True)
s = GenerationSettings(max_new_tokens=6, batch_size=2, chunk_size=2)
cached = generate(bb, prompts, s, cache_dir=cache, progress=False)
plain = generate(bb, prompts, s.model_copy(update={"do_sample": True, "seed": 3}), progress=False)  # no cache: gathered
import os
with open(out + "." + os.environ["RANK"], "w") as f:
    json.dump({"cached": cached.token_ids, "n_generated": cached.n_generated, "sampled": plain.token_ids,
               "world": cached.extra["world_size"], "mine": cached.extra["process_generated"]}, f)
"""


def test_two_processes_equal_one(bb, model_dirs, tmp_path):
    script = tmp_path / "dp.py"
    script.write_text(textwrap.dedent(_DP_SCRIPT))
    prompts = PROMPTS + [p + " red" for p in PROMPTS[:3]]  # 11 prompts: uneven shards
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMREC_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(model_dirs["tiny-llama"]), str(tmp_path / "cache"), str(tmp_path / "out"),
                           json.dumps(prompts)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [json.loads((tmp_path / f"out.{r}").read_text()) for r in (0, 1)]
    assert [o["world"] for o in outs] == [2, 2] and sorted(o["mine"] for o in outs) == [5, 6]  # each did its shard
    files = list((tmp_path / "cache" / "generation").glob("*/chunk-*.jsonl"))
    assert {f.name.split("-")[2] for f in files} == {"r0", "r1"}
    one = generate(bb, prompts, GenerationSettings(max_new_tokens=6, batch_size=4))
    one_sampled = generate(bb, prompts, GenerationSettings(max_new_tokens=6, batch_size=4, do_sample=True, seed=3))
    for o in outs:  # every process returns every output, in input order
        assert o["cached"] == one.token_ids and o["n_generated"] == len(prompts)
        assert o["sampled"] == one_sampled.token_ids
    # the merged cache serves a 1-process rerun completely
    with _Count(bb.model) as c:
        again = generate(bb, prompts, GenerationSettings(max_new_tokens=6, batch_size=2, chunk_size=2),
                         cache_dir=tmp_path / "cache")
    assert c.rows == 0 and again.n_cached == len(prompts) and again.token_ids == one.token_ids
