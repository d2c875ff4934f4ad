"""The event worker's allocator settings (``likewise.ingest.memory``) reach a spawned process."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from likewise.ingest import memory


def _pool_after_settings(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import pyarrow as pa

    memory.keep_freed_memory()
    queue.put(pa.default_memory_pool().backend_name)


def test_a_spawned_worker_allocates_from_jemalloc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    memory.worker_environment()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_pool_after_settings, args=(queue,))
    child.start()
    assert queue.get(timeout=60) == "jemalloc"
    child.join(60)
    assert child.exitcode == 0


def test_an_operators_choice_of_pool_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    memory.worker_environment()
    assert os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "system"
