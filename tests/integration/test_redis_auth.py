"""Redis AUTH through the URL, and no secret shown (issue 14, item 1).

A redis-server of the test's own with ``requirepass``; a coordinator given
``redis://:PASSWORD@...`` takes the lease and leads, ``/jobmanager/config`` and its
log show the URL with ``***``; with a wrong password it says Redis refused it and does not lead.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator

import aiohttp
import pytest

from schemas.catalog import Catalog
from tests.conftest import Stack
from tests.integration.harness import CoordinatorProcess
from tests.own_redis import own_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def protected_redis(tmp_path: os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(port, password) of a redis-server that requires the password."""
    password = secrets.token_urlsafe(16)
    with own_redis("--requirepass", password, "--dir", str(tmp_path)) as (_, port):
        yield port, password


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
