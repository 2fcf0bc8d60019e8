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


JM_SERVICES = ("topics", "coordinator-1", "coordinator-2", "worker-1", "worker-2")


def docker_listener(kafka_env: dict[str, str]) -> str:
    """host:port the broker advertises to containers (the DOCKER listener)."""
    for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(","):
        name, address = item.split("://")
        if name == kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]:
            return address
    raise AssertionError("no advertised listener for containers")


def test_compose_jm_services_are_built_from_the_project_dockerfile() -> None:
    services = compose()["services"]
    assert set(services) >= {"kafka", "redis", *JM_SERVICES}
    for name in JM_SERVICES:
        build = services[name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        # Only coordinators publish a port (their REST API); topics and workers talk
        # to Kafka and Redis, nobody talks to them.
        assert ("ports" in services[name]) == name.startswith("coordinator-"), name


def test_compose_jm_services_reach_kafka_and_redis_inside_the_network() -> None:
    services = compose()["services"]
    kafka_env = services["kafka"]["environment"]
    clusters = set()
    for name in JM_SERVICES:
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092" == docker_listener(kafka_env), name
        match = re.fullmatch(r"redis://(?P<host>[a-z0-9-]+):(?P<port>\d+)/\d+", env["REDIS_URL"])
        assert match is not None, name
        assert match["host"] == "redis" and match["port"] == "6379", name
        clusters.add(env.get("JM_CLUSTER_ID"))
    assert len(clusters) == 1, clusters  # one cluster: the same topics, lease and ids


def test_compose_topics_are_created_once_before_coordinators_and_workers() -> None:
    services = compose()["services"]
    topics = services["topics"]
    assert topics["command"] == ["topics", "create"]
    assert str(topics.get("restart", "no")) == "no"  # a one-shot job
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in JM_SERVICES[1:]:
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["topics"]["condition"] == "service_completed_successfully", name
        for dependency in ("kafka", "redis"):
            assert services[dependency]["healthcheck"]["test"], dependency


def test_compose_runs_two_coordinators_and_two_workers_with_distinct_ids() -> None:
    services = compose()["services"]
    coordinator_ids, worker_ids = [], []
    for name in JM_SERVICES[1:]:
        command = services[name]["command"]
        assert isinstance(command, list), name  # exec form: jm (the entrypoint) gets the args
        if command[0] == "coordinator":
            assert command[1:3] == ["--id", name], command
            assert command[3:5] == ["--rest-host", "0.0.0.0"] and command[5] == "--rest-port"
            # Then the history server it relays (test_compose_coordinators_relay_...).
            assert command[7] == "--history-url" and len(command) == 9, command
            coordinator_ids.append(command[2])
        else:
            assert command[0] == "worker", command
            assert command[1] == "--slots" and int(command[2]) >= 1, command
            assert command[3:] == ["--id", name], command
            worker_ids.append(command[4])
    assert sorted(coordinator_ids) == ["coordinator-1", "coordinator-2"]
    assert sorted(worker_ids) == ["worker-1", "worker-2"]


def test_the_jm_cli_accepts_the_compose_commands() -> None:
    from coordinator.cli import build_parser

    parser = build_parser()
    for name in JM_SERVICES:
        args = parser.parse_args(compose()["services"][name]["command"])
        assert callable(args.handler), name


def test_compose_coordinators_publish_the_rest_api_and_dashboard_on_8081_and_8082() -> None:
    from coordinator.cli import build_parser
    from tests.test_kubernetes_static import served_paths

    services = compose()["services"]
    paths = served_paths()
    assert "/healthz" in paths  # the liveness check is a route of the real app
    for n in (1, 2):
        service = services[f"coordinator-{n}"]
        args = build_parser().parse_args(service["command"])
        port = 8081 + n - 1  # as `make demo` numbers them
        assert (args.rest_host, args.rest_port, args.no_rest) == ("0.0.0.0", port, False)
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]  # host loopback only
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/healthz" in check
    header = COMPOSE.read_text().split("name:", 1)[0]
    assert "http://127.0.0.1:8081/" in header and "http://127.0.0.1:8082/" in header
    assert "dashboard (at /)" in header


def test_compose_generates_the_signing_keys_once_and_every_jm_service_reads_them() -> None:
    services = compose()["services"]
    keys = services["keys"]
    assert keys["command"][:3] == ["keys", "generate", "/keys/signing-keys.json"]
    assert "--if-missing" in keys["command"]  # a restart keeps the keys the cluster signs with
    assert "jm-keys:/keys" in keys["volumes"] and "jm-keys" in compose()["volumes"]
    for name in JM_SERVICES[1:]:
        assert services[name]["environment"]["JM_SIGNING_KEYS_FILE"] == "/keys/signing-keys.json"
        assert "jm-keys:/keys:ro" in services[name]["volumes"], name
        assert services[name]["depends_on"]["keys"]["condition"] == "service_completed_successfully"
    assert "chown jm /keys" in DOCKERFILE.read_text()


def test_compose_runs_the_history_server_on_8083_after_topics_and_keys() -> None:
    import argparse

    from coordinator.commands import history

    service = compose()["services"]["history"]
    parser = argparse.ArgumentParser()
    history.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(service["command"])
    assert (args.command, args.host, args.port) == ("history", "0.0.0.0", 8083)
    assert service["ports"] == ["127.0.0.1:8083:8083"]  # host loopback only
    assert "http://127.0.0.1:8083/readyz" in " ".join(service["healthcheck"]["test"])
    assert service["environment"]["JM_SIGNING_KEYS_FILE"] == "/keys/signing-keys.json"
    assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert service["depends_on"]["keys"]["condition"] == "service_completed_successfully"


def test_compose_coordinators_relay_the_history_service() -> None:
    """Each coordinator's --history-url resolves (through the real flags and settings
    model) to the history service's name and port: the dashboard's archived jobs."""
    from coordinator.cli import build_parser
    from schemas import config

    services = compose()["services"]
    history_port = int(services["history"]["ports"][0].rsplit(":", 1)[1])
    for n in (1, 2):
        args = build_parser().parse_args(services[f"coordinator-{n}"]["command"])
        settings = config.effective(flags=vars(args), environ={}).settings
        assert settings.history_url == f"http://history:{history_port}"
