"""Asynchronous jobs with retries, persisted so that none is lost in a crash.

A job row is written in the same transaction as the audience it computes; at start-up every
job left queued or running is queued again, so an audience never sits in "calculating" forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import select

from likewise.store.db import Database
from likewise.store.models import Job

log = logging.getLogger("likewise.jobs")

MAX_ATTEMPTS = 3
Handler = Callable[[Job], None]
FailureHandler = Callable[[Job, str], None]


class JobRunner:
    def __init__(self, db: Database, *, workers: int, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self.workers = workers
        self.handlers: dict[str, Handler] = {}
        self.on_failure: dict[str, FailureHandler] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def register(self, kind: str, handler: Handler, on_failure: FailureHandler) -> None:
        self.handlers[kind] = handler
        self.on_failure[kind] = on_failure

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="likewise-job")
        with self.db.session() as s:
            ids = list(
                s.execute(
                    select(Job.id).where(Job.status.in_(("QUEUED", "RUNNING"))).order_by(Job.id)
                ).scalars()
            )
        for job_id in ids:
            self.submit(job_id)

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=False)
            self._executor = None

    def submit(self, job_id: int) -> None:
        if self._executor is None:
            return  # not started (e.g. a CLI command); picked up at the next start
        future = self._executor.submit(self._run, job_id)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no job is running or queued (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.01)
        return False

    def _run(self, job_id: int) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with self.db.session() as s:
                job = s.get(Job, job_id)
                if job is None or job.status in ("DONE", "FAILED"):
                    return
                job.status = "RUNNING"
                job.attempts = attempt
            try:
                self.handlers[job.kind](job)
            except Exception as exc:
                log.warning(
                    "job %s (%s) attempt %s failed: %s",
                    job_id,
                    job.kind,
                    attempt,
                    type(exc).__name__,
                )
                error = f"{type(exc).__name__}: {exc}"[:2000]
                if attempt < MAX_ATTEMPTS:
                    time.sleep(0.2 * attempt)
                    continue
                with self.db.session() as s:
                    row = s.get(Job, job_id)
                    if row is not None:
                        row.status, row.error, row.finished_at = "FAILED", error, self.clock()
                self.on_failure[job.kind](job, error)
                return
            with self.db.session() as s:
                row = s.get(Job, job_id)
                if row is not None:
                    row.status, row.finished_at = "DONE", self.clock()
            return
