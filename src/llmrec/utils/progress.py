"""Progress bars (rich) that stay quiet when disabled or when output is not a terminal in CI logs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from llmrec.utils.runtime import progress_enabled

T = TypeVar("T")


def make_progress(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        transient=transient,
        disable=not sys.stderr.isatty() and os.environ.get("LLMREC_PROGRESS") != "force",
        console=None,
    )


def progress_iter(it: Iterable[T], total: int | None = None, desc: str = "", enabled: bool = True) -> Iterator[T]:
    if not progress_enabled(enabled):
        yield from it
        return
    with make_progress() as p:
        task = p.add_task(desc, total=total, info="")
        for x in it:
            yield x
            p.advance(task)
