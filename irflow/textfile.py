"""Line-oriented reading of user files, with the errors every reader of ours reports the same way.

Runs, qrels, corpora, RankGPT lists and teacher-score files are all read through
:func:`text_lines`: strict UTF-8 (a bad byte names its line), a leading byte-order mark dropped,
blank lines skipped, a NUL byte refused (no text format of ours has one: it means a binary or
corrupt file, and it would pass silently into ids and texts), and a missing file, a directory or a
permission problem reported as one :class:`~irflow.errors.IrflowError` naming the path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .errors import IrflowError


def open_binary(path: str | Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise IrflowError("no such file", where=path) from None
    except IsADirectoryError:
        raise IrflowError("is a directory, expected a file", where=path) from None
    except PermissionError:
        raise IrflowError("permission denied", where=path) from None


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, text without the line break)`` of each non-blank line."""
    with open_binary(path) as f:
        for n, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise IrflowError(f"not valid UTF-8 ({e.reason} at byte {e.start} of the line)",
                                  where=path, line=n) from None
            if n == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a byte-order mark is not part of the first record
            text = text.rstrip("\r\n")
            nul = text.find("\x00")
            if nul >= 0:
                raise IrflowError(f"NUL byte at character {nul + 1} of the line (a binary or corrupt file?)",
                                  where=path, line=n)
            if text.strip():
                yield n, text
