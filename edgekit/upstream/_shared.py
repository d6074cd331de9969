"""A change made while any block is open, in a process where builds may run in threads (Dask workers run tasks in
threads): the first block to open installs it, the last to close undoes it, whatever order they end in."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

S = TypeVar("S")


class Shared(Generic[S]):
    """``install()`` returns what ``uninstall(saved)`` needs to put things back."""

    def __init__(self, install: Callable[[], S], uninstall: Callable[[S], None]) -> None:
        self._install, self._uninstall = install, uninstall
        self._lock = threading.Lock()
        self._open = 0
        self._saved: S | None = None

    @property
    def open(self) -> int:
        """How many blocks are open now."""
        return self._open

    @contextlib.contextmanager
    def block(self) -> Iterator[None]:
        with self._lock:
            if self._open == 0:
                self._saved = self._install()
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                if self._open == 0:
                    saved, self._saved = self._saved, None
                    self._uninstall(saved)
