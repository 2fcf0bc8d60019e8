"""The local launcher's small promises: KRaft ids Kafka accepts, ports as asked, the apt lock."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_compose_static import load_launcher

launcher = load_launcher()


def test_kraft_cluster_ids_never_start_with_a_dash() -> None:
    """One id in 64 made from plain urlsafe base64 starts with '-', which kafka-storage
    reads as an option: `make up` then failed at random."""
    ids = [launcher.kafka_cluster_id() for _ in range(20_000)]
    assert not [i for i in ids if i.startswith("-")]
    for cluster_id in ids[:100]:
        assert len(cluster_id) == 22
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert len(set(ids)) == len(ids)


def test_kafka_formats_storage_with_the_launchers_id(tmp_path: Path) -> None:
    """Kafka's own StorageTool accepts the id (the jars come from `make deps`)."""
    libs = launcher.resolve_jars()
    props = tmp_path / "server.properties"
    props.write_text(
        "process.roles=broker,controller\nnode.id=1\n"
        "controller.quorum.voters=1@127.0.0.1:9999\n"
        "listeners=PLAINTEXT://127.0.0.1:9998,CONTROLLER://127.0.0.1:9999\n"
        "controller.listener.names=CONTROLLER\n"
        f"log.dirs={tmp_path / 'data'}\n"
    )
    cluster_id = launcher.kafka_cluster_id()
    cmd = launcher.java_cmd(libs, tmp_path, "kafka.tools.StorageTool", "format",
                            f"--cluster-id={cluster_id}", "-c", str(props))  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    meta = (tmp_path / "data" / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in meta


def test_a_running_instance_on_other_ports_is_refused_not_silently_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "default"
    (home / "kafka").mkdir(parents=True)
    instance = {"name": "default", "home": str(home), "kafka_port": 19092,
                "controller_port": 19093, "redis_port": 16379}  # fmt: skip
    (home / "instance.json").write_text(json.dumps(instance))
    # A live process that looks like the instance's broker.
    fake = subprocess.Popen(["bash", "-c", "exec -a kafka.Kafka sleep 60"])
    try:
        while b"kafka.Kafka" not in Path(f"/proc/{fake.pid}/cmdline").read_bytes():
            time.sleep(0.01)  # until the child has exec'd
        (home / "kafka" / "kafka.pid").write_text(str(fake.pid))
        monkeypatch.setenv("JM_KAFKA_PORT", "29092")
        args = launcher.parser().parse_args(["--home", str(tmp_path), "up"])
        with pytest.raises(launcher.LauncherError, match=r"kafka_port 19092 -> 29092"):
            launcher.cmd_up(args)
    finally:
        fake.kill()
        fake.wait()


def test_apt_waits_for_a_lock_held_by_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stand-in for apt-get that reports the lock twice, then succeeds."""
    counter = tmp_path / "tries"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; "
        "if [ $n -lt 2 ]; then echo 'E: Could not get lock /var/lib/dpkg/lock-frontend' >&2; "
        "exit 100; fi; echo installed"
    )
    done = launcher.run_apt(["bash", "-c", script], dict(os.environ))
    assert done.returncode == 0 and "installed" in done.stdout
    assert counter.read_text().strip() == "3"
    assert "holds the apt lock" in capsys.readouterr().err


def test_other_apt_failures_are_not_retried(tmp_path: Path) -> None:
    done = launcher.run_apt(["bash", "-c", "echo 'E: Unable to locate package x' >&2; exit 100"],
                            dict(os.environ))  # fmt: skip
    assert done.returncode == 100


def test_percentiles_are_nearest_rank() -> None:
    from tests.bench.bench_latency import percentiles

    got = percentiles([float(v) for v in range(1, 11)])
    assert (got["p50_ms"], got["p95_ms"], got["p99_ms"], got["max_ms"]) == (5.0, 10.0, 10.0, 10.0)
    got = percentiles([float(v) for v in range(1, 101)])
    assert (got["p50_ms"], got["p95_ms"], got["p99_ms"]) == (50.0, 95.0, 99.0)


def test_three_brokers_share_a_quorum_and_keep_three_copies(tmp_path: Path) -> None:
    """`up --brokers 3`: each node its own id and ports, one quorum of three voters,
    replication factor 3 with two in sync; `env` exports the catalog's factor."""
    inst = launcher.Instance(name="x", home=str(tmp_path), kafka_port=1, controller_port=2,
                             redis_port=3, more_nodes=[[11, 12], [21, 22]])  # fmt: skip
    assert inst.bootstrap == "127.0.0.1:1,127.0.0.1:11,127.0.0.1:21"
    props = dict(
        line.split("=", 1)
        for line in launcher.server_properties(inst, tmp_path, node=2).splitlines()
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:2,2@127.0.0.1:12,3@127.0.0.1:22"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:11,CONTROLLER://127.0.0.1:12"
    assert props["default.replication.factor"] == "3" and props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.min.isr"] == "2"
    single = launcher.Instance(name="y", home=str(tmp_path), kafka_port=1, controller_port=2,
                               redis_port=3)  # fmt: skip
    assert "min.insync.replicas=1\n" in launcher.server_properties(single, tmp_path)


def test_the_catalog_follows_the_broker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.catalog import REPLICATION_ENV, Catalog, replication_for

    assert [replication_for(n) for n in (1, 2, 3, 5)] == [1, 2, 3, 3]
    monkeypatch.setenv(REPLICATION_ENV, "3")
    three = Catalog("c3")
    assert three.replication_factor == 3
    assert three.journal.config()["min.insync.replicas"] == "2"
    monkeypatch.delenv(REPLICATION_ENV)
    assert Catalog("c1").journal.config()["min.insync.replicas"] == "1"
