"""A periodic background round: the loop several services run in a daemon thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``work`` every ``interval`` seconds (sooner after :meth:`wake`) in a daemon thread
    named ``name``, until :meth:`stop`. A failing round is logged; the next one tries again."""

    def __init__(
        self, name: str, interval: Callable[[], float], work: Callable[[], object]
    ) -> None:
        self.name = name
        self.interval = interval
        self.work = work
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.work()
            except Exception:
                log.exception("%s: round failed", self.name)
