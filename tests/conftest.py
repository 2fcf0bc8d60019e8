"""Session fixtures: one real Kafka broker and one real Redis for the whole run.

Where they come from, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when set (CI or a developer's own);
2. testcontainers, when a Docker engine answers;
3. the project's local launcher (compose/local/launcher.py): Apache Kafka jars
   from Maven Central and ``redis-server``, on free ports, in a directory of its own.

When none of them gives a broker the tests that need it ERROR with the reason.
Nothing here ever skips: a run without Kafka is a failed run.

Records are signed in tests as in production: ``signing_keys`` generates one key
file for the run and points ``JM_SIGNING_KEYS_FILE`` at it, so every coordinator,
worker and ``jm`` the tests start, and every test producer (``run_keys()``),
signs and verifies with the same keys.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas import signing
from schemas.catalog import Catalog

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "compose" / "local" / "launcher.py"


@dataclass(frozen=True)
class Stack:
    """Addresses of the real broker and Redis the tests talk to."""

    bootstrap: str
    redis_url: str
    source: str


def _docker_engine_answers() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False  # only a client, no engine: do not even open a socket
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def _containers() -> Iterator[Stack]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.redis import RedisContainer

    # cp-kafka 7.9 is Apache Kafka 3.9; same broker settings as the local launcher.
    kafka = (
        KafkaContainer("confluentinc/cp-kafka:7.9.1")
        .with_kraft()
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS", "1")
    )
    redis = RedisContainer("redis:7.4")
    with kafka, redis:
        host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        yield Stack(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", "testcontainers")


@contextlib.contextmanager
def _local_launcher() -> Iterator[Stack]:
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    home = Path(tempfile.mkdtemp(prefix="jm-stack-"))
    base = [sys.executable, str(LAUNCHER), "--name", name, "--home", str(home)]
    up = subprocess.run([*base, "up", "--ports", "auto", "--json"],
                        capture_output=True, text=True, check=False)  # fmt: skip
    try:
        if up.returncode != 0:
            raise RuntimeError(
                "no Kafka broker could be started by the local launcher "
                f"(exit {up.returncode}):\n{up.stderr}\n{up.stdout}"
            )
        info = json.loads(up.stdout.strip().splitlines()[-1])
        yield Stack(info["bootstrap"], info["redis_url"], f"local launcher ({home / name})")
    finally:
        subprocess.run([*base, "down", "--purge"], capture_output=True, check=False)


@pytest.fixture(scope="session", autouse=True)
def signing_keys() -> Iterator[Path]:
    """One generated key file (every role) for the whole run, in the environment."""
    home = Path(tempfile.mkdtemp(prefix="jm-keys-"))
    path = home / "keys.json"
    signing.write_key_file(path, signing.generate())
    before = os.environ.get(signing.ENV_FILE)
    os.environ[signing.ENV_FILE] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(signing.ENV_FILE, None)
        else:
            os.environ[signing.ENV_FILE] = before
        path.unlink(missing_ok=True)
        home.rmdir()


def run_keys() -> signing.KeyRing:
    """Every role's keys of this run (test producers sign what they send with them),
    read again only when the file changed: benchmarks sign thousands of records."""
    path = os.environ[signing.ENV_FILE]
    st = os.stat(path)
    return _keys_of(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _keys_of(path: str, mtime_ns: int, size: int) -> signing.KeyRing:
    return signing.KeyRing.load(path)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The real Kafka + Redis for this run (see the module docstring for the order)."""
    env_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    env_redis = os.environ.get("REDIS_URL")
    if env_kafka and env_redis:
        yield Stack(env_kafka, env_redis, "environment")
        return
    provider = _containers if _docker_engine_answers() else _local_launcher
    with provider() as started:
        yield Stack(env_kafka or started.bootstrap, env_redis or started.redis_url, started.source)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names no other test (or test run) uses: ``unique("orders")`` -> ``orders-<test>-<rand>``."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "t").split("::")[-1].split(" ")[0]
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", test).strip("-")[:40]

    def make(stem: str) -> str:
        return f"{stem}-{slug}-{uuid.uuid4().hex[:8]}"

    return make


TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def new_topic(stack: Stack, unique: Callable[[str], str]) -> AsyncIterator[TopicFactory]:
    """Create uniquely named topics on the real broker; deleted after the test."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    created: list[str] = []

    async def create(stem: str = "topic", partitions: int = 1, **config: str) -> str:
        name = unique(stem)
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=config)]
        )
        # create_topics reports failures as error codes in the response instead of raising.
        errors = [(t, code, msg) for t, code, msg in response.topic_errors if code != 0]
        if errors:
            raise RuntimeError(f"could not create topic {name}: {errors}")
        created.append(name)
        return name

    try:
        yield create
    finally:
        if created:
            with contextlib.suppress(Exception):
                await admin.delete_topics(created)
        await admin.close()


@pytest.fixture
async def catalog(stack: Stack, unique: Callable[[str], str]) -> AsyncIterator[Catalog]:
    """A cluster of its own for this test: every catalog topic under a unique cluster id."""
    from aiokafka.admin import AIOKafkaAdminClient

    from schemas import kafkaio

    cat = Catalog(unique("c"))
    await kafkaio.create_topics(stack.bootstrap, cat)
    try:
        yield cat
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        with contextlib.suppress(Exception):
            await admin.delete_topics([t.name for t in cat.topics])
        await admin.close()
