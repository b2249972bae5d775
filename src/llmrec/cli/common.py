"""What every command shares: the typer apps, the console and one-line errors."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

_HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings=_HELP,
                  help="llmrec: sequential recommendation with language models.")
data_app = typer.Typer(no_args_is_help=True, context_settings=_HELP, help="Datasets: list, statistics, export.")


def _width() -> int | None:
    """The terminal's width (or $COLUMNS); 100 columns when printing into a pipe or file."""
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 100


console = Console(width=_width())


def print_error(e: BaseException | str) -> None:
    """``error: <message>`` on stderr as plain text: brackets in a message are printed, never read as markup."""
    from pydantic import ValidationError
    from rich.text import Text

    if isinstance(e, ValidationError):
        from llmrec.config import _format_validation

        msg = _format_validation(e)
    else:
        msg = str(e)
    Console(stderr=True, soft_wrap=True, highlight=False).print(Text.assemble(("error:", "bold red"), " ", msg))


def fail(e: BaseException | str, code: int = 2) -> None:
    print_error(e)
    raise typer.Exit(code)


def check_dataset_name(name: str, generic: bool = False, key: str = "data.name") -> None:
    """An unknown dataset name, said in the config's terms (the loader's own message speaks Python)."""
    from llmrec.data.loaders import DATASETS

    if generic or str(name).strip().lower() in DATASETS or str(name).strip().lower() == "generic":
        return
    fail(f"{key}: unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))} (llmrec data list). For your "
         "own files: data: {name: generic, generic: {interactions: FILE, user_col: ..., item_col: ..., time_col: ...}} "
         "(README, 'Your own data')")
