"""Static checks of compose/kubernetes/: no container engine or cluster runs here, so
the manifests are read, not applied. Every command is parsed by the real ``jm``
parser, the probe paths are routes of the real REST application, and ports, labels,
addresses and the image agree with each other, with compose/Dockerfile and with the
environment names the processes read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "compose" / "kubernetes"
DOCKERFILE = REPO / "compose" / "Dockerfile"
COMPOSE = REPO / "compose" / "docker-compose.yml"
REST_PORT = 8081


def served_paths() -> set[str]:
    """Every path the real REST application of a replica routes."""
    from coordinator.rest.context import RestContext
    from coordinator.rest.server import build_app
    from coordinator.runtime.holder import StateHolder
    from schemas.settings import ClusterSettings

    settings = ClusterSettings(
        bootstrap_servers="127.0.0.1:9092", redis_url="redis://127.0.0.1:6379/0", cluster_id="jm"
    )
    app = build_app(RestContext(holder=StateHolder(), replica_id="r", settings=settings))
    return {resource.canonical for resource in app.router.resources()}


def manifests() -> dict[str, dict[str, Any]]:
    """Every object of every manifest, by ``Kind/name``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), path
            key = f"{doc['kind']}/{doc['metadata']['name']}"
            assert key not in out, key
            out[key] = doc
    return out


def deployment(name: str) -> dict[str, Any]:
    return manifests()[f"Deployment/{name}"]


def containers(dep: dict[str, Any]) -> list[dict[str, Any]]:
    spec = dep["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(dep: dict[str, Any]) -> dict[str, Any]:
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def expand(args: list[str], container: dict[str, Any]) -> list[str]:
    """Kubernetes' $(VAR) expansion: every variable must be defined in the container."""
    defined = {e["name"] for e in container.get("env", [])}

    def value(match: re.Match[str]) -> str:
        assert match[1] in defined, f"$({match[1]}) is not defined in {container['name']}"
        return f"<{match[1]}>"

    return [re.sub(r"\$\(([A-Z_][A-Z0-9_]*)\)", value, str(a)) for a in args]


def parse(container: dict[str, Any]) -> Any:
    from coordinator.cli import build_parser

    assert "command" not in container, "the image's entrypoint (jm) gets the args"
    args = build_parser().parse_args(expand(container["args"], container))
    assert callable(args.handler)
    return args


def test_the_manifests_are_valid_yaml_objects_and_the_kustomization_lists_them_all() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    objects = manifests()
    assert set(objects) == {
        "ConfigMap/jm-cluster",
        "Deployment/jm-coordinator",
        "Deployment/jm-history",
        "Deployment/jm-worker",
        "Service/jm-history",
        "Service/jm-rest",
    }
    for key, obj in objects.items():
        assert obj["apiVersion"] in {"v1", "apps/v1"}, key
        if obj["kind"] == "Deployment":
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items(), key


def test_two_coordinator_replicas_serve_rest_with_probes_the_app_answers() -> None:
    dep = deployment("jm-coordinator")
    assert dep["spec"]["replicas"] == 2
    container = main_container(dep)
    args = parse(container)
    assert args.rest_host == "0.0.0.0" and args.rest_port == REST_PORT and not args.no_rest
    assert expand(container["args"], container)[:3] == ["coordinator", "--id", "<POD_NAME>"]
    port = next(p for p in container["ports"] if p["name"] == "rest")
    assert port["containerPort"] == REST_PORT
    paths = served_paths()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in paths, probe
        assert get["port"] in ("rest", REST_PORT), probe


def test_the_rest_service_reaches_the_coordinators_rest_port() -> None:
    service = manifests()["Service/jm-rest"]
    pod_labels = deployment("jm-coordinator")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    worker_labels = deployment("jm-worker")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker_labels.items()
    [port] = service["spec"]["ports"]
    assert port["port"] == REST_PORT
    assert port["targetPort"] in {
        p["name"] for p in main_container(deployment("jm-coordinator"))["ports"]
    }


def test_workers_run_jm_worker_with_an_id_per_pod_and_only_a_metrics_port() -> None:
    dep = deployment("jm-worker")
    container = main_container(dep)
    args = parse(container)
    assert expand(container["args"], container)[:3] == ["worker", "--id", "<POD_NAME>"]
    assert args.slots >= 1
    assert [p["name"] for p in container["ports"]] == ["metrics"]
    # A worker cancels its tasks and deregisters on SIGTERM: give it the time.
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 20


@pytest.mark.parametrize(("name", "process"), [("jm-coordinator", "coordinator"),
                                               ("jm-worker", "worker")])  # fmt: skip
def test_prometheus_scrapes_the_port_the_process_serves_its_metrics_on(
    name: str, process: str
) -> None:
    """The pod's scrape annotations name the container's metrics port, and the settings
    the container's environment gives resolve (through the real settings model) to a
    Prometheus endpoint on that port, on every address, for that process."""
    from schemas import config

    dep = deployment(name)
    notes = dep["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/path"] == "/metrics"
    container = main_container(dep)
    [port] = [p for p in container["ports"] if p["name"] == "metrics"]
    assert int(notes["prometheus.io/port"]) == port["containerPort"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = config.effective(environ=env).settings
    assert settings.otel_prometheus_port == port["containerPort"]
    assert settings.otel_prometheus_host == "0.0.0.0"
    entry = config.BY_KEY["telemetry.prometheus.port"]
    assert process in entry.processes
    # The REST port is another one: the two servers do not collide.
    assert port["containerPort"] != REST_PORT


def test_every_container_gets_the_cluster_addresses_from_the_configmap() -> None:
    from schemas.settings import ENVIRONMENT

    data = manifests()["ConfigMap/jm-cluster"]["data"]
    read = {names[0] for names in ENVIRONMENT.values()}
    assert set(data) == read  # exactly the names the processes read
    assert re.fullmatch(r"[a-z0-9.-]+:\d+(,[a-z0-9.-]+:\d+)*", data["KAFKA_BOOTSTRAP_SERVERS"])
    assert re.fullmatch(r"rediss?://[a-z0-9.-]+:\d+/\d+", data["REDIS_URL"])
    for name in ("jm-coordinator", "jm-worker"):
        for container in containers(deployment(name)):
            refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
            assert refs == ["jm-cluster"], (name, container["name"])
            # No address is set anywhere else: one place to change them.
            assert not {e["name"] for e in container.get("env", [])} & read


def test_topics_are_created_before_coordinators_and_workers_start() -> None:
    for name in ("jm-coordinator", "jm-worker"):
        [init] = deployment(name)["spec"]["template"]["spec"]["initContainers"]
        assert init["args"] == ["topics", "create"]
        parse(init)


_UNITS = {"": 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: object) -> float:
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi)?", str(value))
    assert match is not None, value
    return float(match[1]) * _UNITS[match[2] or ""]


@pytest.mark.parametrize("name", ["jm-coordinator", "jm-worker", "jm-history"])
def test_every_container_has_requests_within_limits(name: str) -> None:
    for container in containers(deployment(name)):
        resources = container["resources"]
        for what in ("cpu", "memory"):
            request = quantity(resources["requests"][what])
            limit = quantity(resources["limits"][what])
            assert 0 < request <= limit, (container["name"], what)


def test_the_image_is_the_one_compose_builds_from_the_project_dockerfile() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    jm = compose["services"]["coordinator-1"]
    assert (COMPOSE.parent / jm["build"]["context"] / jm["build"]["dockerfile"]).resolve() == (
        DOCKERFILE
    )
    image = jm["image"]
    uid = re.search(r"useradd .*--uid (\d+) jm", DOCKERFILE.read_text())
    assert uid is not None
    for name in ("jm-coordinator", "jm-worker"):
        dep = deployment(name)
        security = dep["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == int(uid[1])
        for container in containers(dep):
            assert container["image"] == image, (name, container["name"])
    assert (
        f"docker build -f compose/Dockerfile -t {image} ."
        in (K8S / "kustomization.yaml").read_text()
    )
    assert re.search(rf"^EXPOSE {REST_PORT}$", DOCKERFILE.read_text(), re.M)


def test_coordinators_and_workers_mount_their_signing_keys_read_only() -> None:
    """Coordinators get every role's key, workers only the worker and command keys
    (two Secrets made with `jm keys generate` and `jm keys subset`)."""
    secrets = {"jm-coordinator": "jm-signing-keys", "jm-worker": "jm-signing-keys-worker"}
    for name, secret in secrets.items():
        spec = deployment(name)["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "signing-keys"]
        assert volume["secret"]["secretName"] == secret
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "signing-keys"]
        assert mount == {"name": "signing-keys", "mountPath": "/keys", "readOnly": True}
    data = manifests()["ConfigMap/jm-cluster"]["data"]
    assert data["JM_SIGNING_KEYS_FILE"] == "/keys/signing-keys.json"  # where both mount it
    header = (K8S / "kustomization.yaml").read_text()
    assert "jm keys subset keys.json worker-keys.json --roles worker command" in header


def test_the_coordinator_memory_follows_docs_memory_md() -> None:
    """The limit is jobmanager.memory.process.size, and both it and the request hold
    what the default limits need (coordinator/runtime/memory.py, docs/memory.md)."""
    from coordinator.runtime.memory import needed_for, process_size_problem
    from schemas.config import effective

    (container,) = [
        c for c in containers(deployment("jm-coordinator")) if c["name"] == "coordinator"
    ]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = effective(environ=env).settings
    limit = quantity(container["resources"]["limits"]["memory"])
    request = quantity(container["resources"]["requests"]["memory"])
    assert settings.memory_process_size == limit
    assert process_size_problem(settings) is None
    assert needed_for(settings) <= request <= limit


def test_the_history_server_runs_jm_history_with_journal_keys_behind_a_service() -> None:
    import argparse

    from coordinator.commands import history

    dep = deployment("jm-history")
    assert dep["spec"]["replicas"] == 1  # one consumer of its tables' partition
    container = main_container(dep)
    parser = argparse.ArgumentParser()
    history.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(container["args"])
    assert (args.command, args.host, args.port) == ("history", "0.0.0.0", 8083)
    assert container["ports"] == [{"name": "history", "containerPort": 8083}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "history"}
    assert container["envFrom"] == [{"configMapRef": {"name": "jm-cluster"}}]
    [volume] = dep["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == "jm-signing-keys-history"
    service = manifests()["Service/jm-history"]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "jm-history"}
    assert service["spec"]["ports"][0]["targetPort"] == "history"


def test_the_coordinators_relay_the_history_service() -> None:
    """The coordinator's environment resolves (through the real settings model) to the
    history Service's name and port: the dashboard's archived jobs."""
    from schemas import config

    container = main_container(deployment("jm-coordinator"))
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    service = manifests()["Service/jm-history"]
    url = config.effective(environ=env).settings.history_url
    assert url == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert "coordinator" in config.BY_KEY["historyserver.web.url"].processes
