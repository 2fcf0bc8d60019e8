"""Fixtures of the integration tests: real processes on the session's broker and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from schemas.catalog import Catalog
from tests.conftest import Stack
from tests.integration.harness import Cluster


@pytest.fixture
async def cluster(stack: Stack, catalog: Catalog) -> AsyncIterator[Cluster]:
    """Coordinators and workers for this test's cluster, all stopped afterwards."""
    async with AsyncExitStack() as exits:
        yield Cluster(stack, catalog, exits)
