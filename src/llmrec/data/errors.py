"""Errors raised for bad input data.

Every problem with a user's (or a staged dataset's) files is reported as ONE
:class:`DataError` whose message names the file, the 1-based line (when the
problem is tied to a line) and what was expected, e.g.::

    /path/u.data, line 17, field 'timestamp': expected an integer unix timestamp, got 'abc'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input data.

    The message always names the file, the line (1-based, when applicable) and
    what was expected.  The structured parts are kept as attributes so callers
    (CLI, service) can render them differently:

    * ``path``    -- the file (``str``) or ``None`` when no file is involved
    * ``line``    -- 1-based line number or ``None``
    * ``field``   -- column / field name or ``None``
    * ``message`` -- the bare explanation (what was expected, what was found)
    """

    def __init__(
        self,
        path: str | Path | None,
        message: str,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.message = str(message)
        self.line = None if line is None else int(line)
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where: list[str] = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        if not where:
            return self.message
        return ", ".join(where) + ": " + self.message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self._render()

    def __reduce__(self):  # keep picklable (multiprocessing / dataloader workers)
        return (type(self), (self.path, self.message, self.line, self.field))
