"""One exception type for every input problem a user can fix.

Commands raise :class:`IrflowError` with the file (or config key) and line at fault; the CLI turns
it into one line on stderr and exit status 2, and the store never publishes a directory for a
step that raised.
"""

from __future__ import annotations

from pathlib import Path


class IrflowError(Exception):
    """A problem with the user's input: names what, where, and why."""

    def __init__(self, message: str, *, where: str | Path | None = None, line: int | None = None):
        self.message = message
        self.where = str(where) if where is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        loc = ""
        if self.where is not None:
            loc = self.where + (f":{self.line}" if self.line is not None else "") + ": "
        return loc + self.message
