"""Redis AUTH through the URL, and no secret shown (issue 14, item 1).

A redis-server of the test's own with ``requirepass``; a coordinator given
``redis://:PASSWORD@...`` takes the lease and leads, ``/jobmanager/config`` and its
log show the URL with ``***``; with a wrong password it says Redis refused it and does not lead.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import aiohttp
import pytest

from schemas.catalog import Catalog
from tests.conftest import Stack
from tests.integration.harness import CoordinatorProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def protected_redis(tmp_path: os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(port, password) of a redis-server that requires the password."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not on PATH (make deps installs it)"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    password = secrets.token_urlsafe(16)
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--requirepass", password, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
        yield port, password
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_a_coordinator_leads_with_a_redis_password_it_never_shows(
    stack: Stack, catalog: Catalog, protected_redis: tuple[int, str]
) -> None:
    port, password = protected_redis
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    replica = CoordinatorProcess(stack, catalog, "r1", redis_url=url)
    try:
        await replica.wait_for_line("role LEADER", seconds=60)
        rest = re.search(r"rest (http://\S+)", replica.output())
        assert rest, replica.output()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{rest.group(1)}/jobmanager/config") as response,
        ):
            shown = await response.text()
        assert response.status == 200
        assert password not in shown
        assert f"redis://:***@127.0.0.1:{port}/0" in shown
        assert "jm.kafka.security-protocol" in shown
        assert f"Redis redis://:***@127.0.0.1:{port}/0" in replica.output()
        assert password not in replica.output()
    finally:
        replica.stop()

    wrong = CoordinatorProcess(stack, catalog, "r2", redis_url=f"redis://:nope@127.0.0.1:{port}/0")
    try:
        await wrong.wait_for_line("AuthenticationError", seconds=60)
        assert "role LEADER" not in wrong.output()
        assert "nope" not in wrong.output()
    finally:
        wrong.stop()
