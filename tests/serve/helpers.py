"""Real servers on free loopback ports: in a background thread, or as their own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]


def api_client(url: str, **options) -> httpx.Client:
    """A client for the server at ``url`` that sends its ``Origin``, as the page does (a
    token-less server refuses uploads without it)."""
    return httpx.Client(base_url=url, headers={"Origin": url}, **options)


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextmanager
def running(app, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on ``host`` until the block ends; yields its base URL."""
    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serving_process(argv: list[str], port: int) -> Iterator[subprocess.Popen]:
    """Run ``litemeta ARGV`` (a `serve` command on ``port``) as its own process until it
    answers ``/api/health``; stop it with Ctrl-C at the end unless it was stopped already."""
    server = subprocess.Popen(
        [sys.executable, "-m", "litemeta.cli", *argv],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not answer in 120 s"
                time.sleep(0.2)
        yield server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)
