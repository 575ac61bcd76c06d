"""Terminal output of the local stack: whole lines from many threads, no raw control bytes."""

from __future__ import annotations

import io
import sys
import threading
from typing import TextIO


def printable(text: str) -> str:
    """text with every non-printable character escaped (ESC as \\x1b, NUL as \\x00), so that
    what a client sends cannot move the cursor, clear the screen or retitle the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class LineWriter(io.TextIOBase):
    """A text stream that writes each complete line with one write, under one lock.

    print() writes a line's text and its newline separately, so lines printed by
    concurrent threads (the functions' JSON log lines) interleave mid-line on a plain
    stream. Here each thread's text waits in its own buffer until its newline.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._local = threading.local()
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        pending = getattr(self._local, "pending", "") + text
        head, newline, tail = pending.rpartition("\n")
        self._local.pending = tail
        if newline:
            with self._lock:
                self.stream.write(head + newline)
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        self._local.pending = ""
        with self._lock:
            if pending:
                self.stream.write(pending)
            self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.stream.encoding

    def __getattr__(self, name: str) -> object:  # reconfigure, buffer, errors, ...
        return getattr(self.stream, name)


def install_line_writer() -> None:
    """Make sys.stdout and sys.stderr line-atomic (once; a no-op when they already are)."""
    if not isinstance(sys.stdout, LineWriter):
        sys.stdout = LineWriter(sys.stdout)
    if not isinstance(sys.stderr, LineWriter):
        sys.stderr = LineWriter(sys.stderr)
