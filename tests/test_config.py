"""The settings model (schemas/config.py): precedence flags > environment > file >
defaults, where each value came from, secrets masked, bad values refused saying
which, and docs/configuration.md generated from the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import config, security
from schemas.config import ConfigError, effective
from worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[1]


def test_the_doc_is_generated_from_the_model() -> None:
    """Fails when a setting changes without `python -m schemas.config --write`."""
    assert config.DOC.read_text(encoding="utf-8") == config.render()
    for entry in config.entries():
        assert f"`{entry.key}`" in config.DOC.read_text(encoding="utf-8")


def test_flags_win_over_environment_over_file_over_defaults(tmp_path: Path) -> None:
    file = tmp_path / "jm.yaml"
    file.write_text(
        "heartbeat.timeout: 30 s\n"
        "rest.port: 1000\n"
        "jobmanager:\n  max-batch: 7\n  memory: {process: {size: 2g}}\n"
    )
    environ = {"JM_REST_PORT": "2000", "JM_HEARTBEAT_TIMEOUT": "40s"}
    got = effective(config_file=str(file), environ=environ,
                    flags={"heartbeat_timeout_ms": 50_000, "lease_ttl_ms": None})  # fmt: skip
    s = got.settings
    assert (s.heartbeat_timeout_ms, s.rest_port, s.max_batch) == (50_000, 2000, 7)
    assert s.memory_process_size == 2 << 30 and s.lease_ttl_ms == 3_000
    assert got.sources["heartbeat.timeout"] == "flag --heartbeat-timeout-ms"
    assert got.sources["rest.port"] == "env JM_REST_PORT"
    assert got.sources["jobmanager.max-batch"] == f"file {file}"
    assert got.sources["high-availability.lease.ttl"] == "default"
    # -D is a flag too; the file named by $JM_CONFIG_FILE is read without --config.
    environ["JM_CONFIG_FILE"] = str(file)
    got = effective(environ=environ, dynamic=["rest.port=3000"])
    assert got.settings.rest_port == 3000 and got.sources["rest.port"] == "flag -D rest.port"
    assert got.settings.heartbeat_timeout_ms == 40_000  # the environment over the file


@pytest.mark.parametrize(
    ("file", "dynamic", "message"),
    [
        ("heartbeat.timout: 5s\n", [], "unknown key(s) heartbeat.timout"),
        ("rest.port: [1]\n", [], "rest.port = [1] (file"),
        ("", ["heartbeat.timeout=soon"], "heartbeat.timeout = 'soon' (flag -D heartbeat.timeout)"),
        ("", ["jobmanager.memory.process.size=12 parsecs"], "is not a memory size"),
        ("", ["rest.port"], "KEY=VALUE expected"),
        ("- a list\n", [], "a map of keys to values expected"),
    ],
)
def test_a_bad_value_is_refused_saying_which(
    tmp_path: Path, file: str, dynamic: list[str], message: str
) -> None:
    path = tmp_path / "jm.yaml"
    path.write_text(file)
    with pytest.raises(ConfigError) as caught:
        effective(config_file=str(path), dynamic=dynamic, environ={})
    assert message in str(caught.value)


def test_the_worker_reads_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "jm.yaml"
    file.write_text("taskmanager.numberOfTaskSlots: 3\nheartbeat.interval: 250 ms\n")
    monkeypatch.setenv("JM_CONFIG_FILE", str(file))
    monkeypatch.setenv("JM_WORKER_CANCEL_TIMEOUT_S", "4")  # the older name, in seconds
    settings = WorkerSettings.load(tm_id="tm-9", slots=None)
    assert (settings.slots, settings.heartbeat_interval_s) == (3, 0.25)
    assert (settings.cancel_timeout_s, settings.tm_id) == (4.0, "tm-9")


def test_jm_config_show_prints_every_setting_its_source_and_masks_secrets(tmp_path: Path) -> None:
    file = tmp_path / "jm.yaml"
    file.write_text("rest:\n  token: file-secret-token\nheartbeat.timeout: 20s\n")
    # Only this test's JM_KAFKA_* (another test of the same process may have exported some).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JM_KAFKA_")}
    env = dict(clean, REDIS_URL="redis://:env-secret-password@redis:6379/0",
               JM_REST_PORT="9999", PYTHONPATH=str(REPO), JM_KAFKA_SASL_PASSWORD="kafka-secret",
               JM_KAFKA_SECURITY_PROTOCOL="SASL_SSL")  # fmt: skip
    env.pop("JM_CONFIG_FILE", None)
    run = subprocess.run(
        [sys.executable, "-m", "coordinator", "config", "show", "--config", str(file),
         "-D", "jobmanager.retention.ended-jobs.max-count=5", "--json",
         "--kafka-sasl-username", "alice"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = {r["key"]: r for r in json.loads(run.stdout)}
    # The model's settings, then Kafka's SASL/TLS ones (schemas/security.py).
    assert set(rows) == {e.key for e in config.entries()} | {k for k, _, _ in security.SHOWN}
    assert rows["kafka.sasl.password"]["value"] == "******"
    assert rows["kafka.sasl.password"]["source"] == "env JM_KAFKA_SASL_PASSWORD"
    assert rows["kafka.sasl.username"] == {"key": "kafka.sasl.username", "value": "alice",
                                           "source": "flag --kafka-sasl-username"}  # fmt: skip
    assert rows["kafka.security.protocol"]["value"] == "SASL_SSL"
    assert rows["kafka.sasl.mechanism"] == {"key": "kafka.sasl.mechanism", "value": "PLAIN",
                                            "source": "default"}  # fmt: skip
    assert rows["rest.token"] == {"key": "rest.token", "value": "******",
                                  "source": f"file {file}"}  # fmt: skip
    assert rows["redis.url"]["value"] == "redis://:***@redis:6379/0"
    assert rows["redis.url"]["source"] == "env REDIS_URL"
    assert rows["rest.port"]["value"] == "9999"
    assert rows["heartbeat.timeout"]["value"] == "20000 ms"
    assert rows["jobmanager.retention.ended-jobs.max-count"]["source"] == (
        "flag -D jobmanager.retention.ended-jobs.max-count"
    )
    assert "secret" not in run.stdout
    table = subprocess.run(
        [sys.executable, "-m", "coordinator", "config", "show", "--for", "worker"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "taskmanager.numberOfTaskSlots" in table.stdout and "rest.port" not in table.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "coordinator", "config", "show", "-D", "rest.port=x"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "rest.port = 'x' (flag -D rest.port)" in bad.stderr


def test_the_history_server_url_from_flag_environment_and_config_show() -> None:
    """historyserver.web.url (the dashboard's archived jobs): --history-url wins over
    $JM_HISTORYSERVER_WEB_URL; `jm config show` lists it with its source; a value that
    is not an http(s) URL is refused saying which."""
    environ = {"JM_HISTORYSERVER_WEB_URL": "http://history:8083"}
    got = effective(environ=environ)
    assert got.settings.history_url == "http://history:8083"
    assert got.sources["historyserver.web.url"] == "env JM_HISTORYSERVER_WEB_URL"
    got = effective(environ=environ, flags={"history_url": "https://archive.example/hs"})
    assert got.settings.history_url == "https://archive.example/hs"
    assert got.sources["historyserver.web.url"] == "flag --history-url"
    assert effective(environ={}).settings.history_url == ""  # none by default
    with pytest.raises(ConfigError) as caught:
        effective(environ={}, dynamic=["historyserver.web.url=history:8083"])
    assert "historyserver.web.url = 'history:8083' (flag -D historyserver.web.url)" in str(
        caught.value
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), **environ)
    env.pop("JM_CONFIG_FILE", None)
    run = subprocess.run(
        [sys.executable, "-m", "coordinator", "config", "show", "--json",
         "-D", "historyserver.web.timeout=2 s"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = {r["key"]: r for r in json.loads(run.stdout)}
    assert rows["historyserver.web.url"] == {"key": "historyserver.web.url",
                                             "value": "http://history:8083",
                                             "source": "env JM_HISTORYSERVER_WEB_URL"}  # fmt: skip
    assert rows["historyserver.web.timeout"]["value"] == "2000 ms"


def test_docs_memory_md_shows_the_sizing_of_the_model() -> None:
    """The sizing table of docs/memory.md is the one coordinator/runtime/memory.py
    computes from the measured figures (update both when the figures change)."""
    from coordinator.runtime.memory import sizing_table

    assert sizing_table() in (REPO / "docs" / "memory.md").read_text(encoding="utf-8")
