"""Static checks of the Docker files: no Docker engine runs here, so they are read, not run.

The broker settings that matter for correctness (transactions need replication
factor 1 on one node; topics are never created implicitly) must agree between
docker-compose.yml and the local launcher.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "compose" / "docker-compose.yml"
DOCKERFILE = REPO / "compose" / "Dockerfile"

MUST_AGREE = {
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
}


def load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("launcher", REPO / "compose/local/launcher.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def broker_settings_from_env(env: dict[str, str]) -> dict[str, str]:
    """KAFKA_TRANSACTION_STATE_LOG_MIN_ISR -> transaction.state.log.min.isr (apache/kafka rule)."""
    return {
        key.removeprefix("KAFKA_").lower().replace("_", "."): str(value)
        for key, value in env.items()
        if key.startswith("KAFKA_")
    }


def test_compose_services_have_images_healthchecks_and_volumes() -> None:
    services = compose()["services"]
    assert set(services) >= {"kafka", "redis"}
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", services["kafka"]["image"])
    assert services["redis"]["image"].startswith("redis:")
    declared_volumes = set(compose()["volumes"])
    for name in ("kafka", "redis"):
        service = services[name]
        assert service["healthcheck"]["test"], name
        mounted = {v.split(":")[0] for v in service["volumes"]}
        assert mounted and mounted <= declared_volumes, name
        # Published ports only on loopback.
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), name


def test_compose_broker_settings_match_the_local_launcher() -> None:
    env = compose()["services"]["kafka"]["environment"]
    from_compose = broker_settings_from_env(env)
    launcher = load_launcher()
    inst = launcher.Instance("x", "/tmp/x", 9092, 9093, 6379)
    from_launcher = dict(
        line.split("=", 1)
        for line in launcher.server_properties(inst, Path("/tmp/x")).splitlines()
        if line
    )
    for key, value in MUST_AGREE.items():
        assert from_compose.get(key) == value, f"compose: {key}"
        assert from_launcher.get(key) == value, f"launcher: {key}"
    assert from_compose["process.roles"] == from_launcher["process.roles"] == "broker,controller"


def test_compose_listeners_are_consistent() -> None:
    env = compose()["services"]["kafka"]["environment"]
    names = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    advertised = {item.split("://")[0] for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    protocols = {
        item.split(":")[0] for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    }
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in names
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert names <= protocols and advertised <= names


def test_dockerfile_installs_the_project_and_runs_jm() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", text, re.M)
    for package in ("schemas", "coordinator", "worker"):
        assert re.search(rf"^COPY {package} ", text, re.M), package
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert '"jm"' in text.split("ENTRYPOINT", 1)[1].splitlines()[0]
    assert re.search(r"^USER (?!root)", text, re.M)
