"""Shared pieces of the benchmarks: timing, peak memory of a child process, a server process."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil


def work_dir() -> Path:
    """A scratch directory for one run, removed when the process exits (gigabytes at 10M)."""
    work = Path(tempfile.mkdtemp(prefix="likewise-bench-"))
    atexit.register(shutil.rmtree, work, True)
    return work


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeakRSS:
    """Samples a process's resident memory (with its children) every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                rss += sum(c.memory_info().rss for c in self.proc.children(recursive=True))
            except psutil.Error:
                break
            self.peak = max(self.peak, rss)
            time.sleep(0.02)

    def reset(self) -> None:
        self.peak = 0

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class CPUTime:
    """CPU seconds (user + system) a process and each of its children used since creation,
    keyed by process name; :meth:`since` gives the difference to an earlier reading."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.reading = self.read()

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                name = "server" if p.pid == self.proc.pid else f"child {p.pid}"
                out[name] = t.user + t.system
            except psutil.Error:
                continue
        return out

    def since(self) -> dict[str, float]:
        """Seconds used since the last reading (which this call replaces)."""
        now = self.read()
        spent = {k: v - self.reading.get(k, 0.0) for k, v in now.items()}
        self.reading = now
        return spent


@contextmanager
def server(data_dir: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``likewise serve`` in its own process; yields its base URL and the process."""
    port = free_port()
    environ = {
        **os.environ,
        "LIKEWISE_DATA_DIR": str(data_dir),
        "LIKEWISE_PORT": str(port),
        "LIKEWISE_ADMIN_TOKEN": "bench",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "likewise.cli", "serve"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/health", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("server did not start") from None
            time.sleep(0.1)
    try:
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(30)


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def bare_server() -> tuple[str, subprocess.Popen[bytes]]:
    """``bench/bare_app.py`` under uvicorn (the floor any endpoint of the stack pays): its URL
    and process, which the caller stops."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.post(url + "/open_api/v1.3/event/track/", content=b"{}", timeout=1)
            return url, proc
        except httpx.TransportError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("bare server did not start") from None
            time.sleep(0.1)
