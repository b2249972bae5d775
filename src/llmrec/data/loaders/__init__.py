"""Raw dataset loaders.

Every loader returns a :class:`RawData` with one interactions frame in a single,
fixed schema (see :class:`RawData`), plus optional item text and user features.
Nothing is filtered, deduplicated or re-indexed here: that is the job of the
preprocessing step, which must be able to trust that ``interactions`` is exactly
what the files say, in file order.

Bad input never produces a deep traceback or a silently wrong frame: it raises
ONE :class:`~llmrec.data.errors.DataError` naming the file, the 1-based line and
what was expected.

Staged datasets (``DATASETS``, one registry: see :mod:`.registry`) are looked up
under a data root found by :func:`resolve_data_root`; a user's own files go
through :func:`load_generic`.

Modules: ``raw`` (the result type), ``readers`` (low-level reading), ``table``
(the CSV/TSV/parquet reader of the generic loader), ``registry``, and one module
per source family: ``movielens``, ``p5`` (Amazon, Yelp), ``mind``, ``taobao``,
``generic``.
"""

from __future__ import annotations

from .raw import RawData
from .registry import DATASETS, StagedDataset, load_raw, resolve_data_root, source_files

# the source families register their datasets on import, in this order (the order `llmrec data list` shows)
from .movielens import load_ml_100k, load_ml_1m, load_ml_1m_pairs  # noqa: E402  isort: skip
from .p5 import load_beauty, load_sports, load_toys, load_yelp  # noqa: E402  isort: skip
from .mind import load_mind_sample  # noqa: E402  isort: skip
from .taobao import load_taobao_sample  # noqa: E402  isort: skip
from .generic import load_generic  # noqa: E402  isort: skip

__all__ = [
    "RawData",
    "DATASETS",
    "StagedDataset",
    "resolve_data_root",
    "source_files",
    "load_raw",
    "load_generic",
    "load_ml_100k",
    "load_ml_1m",
    "load_ml_1m_pairs",
    "load_beauty",
    "load_sports",
    "load_toys",
    "load_yelp",
    "load_mind_sample",
    "load_taobao_sample",
]
