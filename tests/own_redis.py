"""A real redis-server of a test's own, on a free port, for faults that must not reach
the Redis other tests share (a password, a stopped server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def own_redis(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start ``redis-server`` with `args` (no persistence); yields the process and port."""
    server = shutil.which("redis-server")
    assert server, "redis-server is installed by `make deps`"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield proc, port
    finally:
        proc.kill()
        proc.wait(timeout=10)
