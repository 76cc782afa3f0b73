"""Ctrl-C that a search cannot lose.

Python ignores an exception raised while it runs a weakref callback or a ``__del__`` (it
prints "Exception ignored in ..." and goes on). A ``KeyboardInterrupt`` whose signal lands
there vanishes, and the search trains on as if nothing was pressed; under load this
happens (seen once in the test suite's Ctrl-C test). `CtrlC` remembers the request, and
`CtrlC.check`, called after every epoch and every trial, raises it again.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class CtrlC:
    """While active, SIGINT raises ``KeyboardInterrupt`` as usual and is also remembered."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> CtrlC:
        self.requested = False
        # Only in place of Python's own Ctrl-C: a process started with SIGINT ignored (a
        # background job) or with its own handler keeps it.
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise the interrupt again if one was requested (it may have been swallowed)."""
        if self.requested:
            raise KeyboardInterrupt


#: The search's guard: `nas.search.run_search` activates it around ``study.optimize``.
CTRL_C = CtrlC()
