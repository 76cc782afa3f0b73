"""What a long command shows while it works: a progress bar on a terminal, one line per
step otherwise (output to a file or a pipe, CI logs), where a redrawn bar would be noise."""

from __future__ import annotations

import os
import sys


def interactive() -> bool:
    """Whether stdout and stderr are a terminal wide enough for a progress bar."""
    try:
        return sys.stdout.isatty() and sys.stderr.isatty() and os.get_terminal_size().columns > 0
    except OSError:
        return False


def line(text: str) -> None:
    """One progress line on stderr, where the bar would have been."""
    print(text, file=sys.stderr, flush=True)
