"""The settings of the coordinator and the worker: one pydantic-settings model.

Every setting has a Flink-like key (``heartbeat.timeout``, ``rest.port``, ...) and
is read from, lowest precedence first:

1. its default (the model);
2. the YAML config file (``--config FILE``, else ``$JM_CONFIG_FILE``): flat keys
   (``rest.port: 8081``, as Flink's flink-conf.yaml) or nested maps
   (``rest: {port: 8081}``, as Flink's config.yaml), both flattened to the key;
3. the environment: each setting's variables (``JM_`` + the key in capitals,
   ``.`` and ``-`` as ``_``; some also older names such as ``JM_REST_PORT``);
4. the command line: ``-D key=value`` (repeatable) and the flags the commands
   had before the model (``--heartbeat-timeout-ms``, ``--slots``, ...).

So a flag wins over the environment, which wins over the file, which wins over
the default (Flink's own order: dynamic properties over the config file).
``effective`` also says where each value came from; ``jm config show`` prints it,
secrets masked. docs/configuration.md is generated from this model
(``python -m schemas.config --write``; a test fails when the two differ).

Imported only where a process starts (``jm coordinator``, ``jm worker``,
``jm config show``): pydantic-settings costs more CPU to import than the rest of
a short ``jm`` command (schemas/settings.py, standard library only, is what those use).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, cast

import yaml
from pydantic import BeforeValidator, Field, ValidationError
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas import timing
from schemas.limits import MAX_JOBS, MAX_SUBTASKS
from schemas.settings import CONFIG_FILE_ENV

Process = Literal["coordinator", "worker"]
BOTH: Final[tuple[Process, ...]] = ("coordinator", "worker")
COORDINATOR: Final[tuple[Process, ...]] = ("coordinator",)
WORKER: Final[tuple[Process, ...]] = ("worker",)
DOC: Final = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


class ConfigError(ValueError):
    """A config file, variable or flag that cannot be used; the message says which."""


_UNITS_BYTES: Final = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
                       "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}  # fmt: skip
_UNITS_MS: Final = {"": 1, "ms": 1, "s": 1_000, "sec": 1_000, "min": 60_000, "m": 60_000,
                    "h": 3_600_000, "d": 86_400_000}  # fmt: skip
_PLAIN: Final = re.compile(r"\s*\d+(?:\.\d+)?\s*")
_AMOUNT: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def _amount(value: Any, units: Mapping[str, int], what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value  # pydantic says what is wrong with it
    if isinstance(value, int | float):
        return int(value)
    found = _AMOUNT.fullmatch(value)
    if found is None or found.group(2).lower() not in units:
        raise ValueError(
            f"{value!r} is not a {what} (a number with one of the units "
            f"{', '.join(u for u in units if u)}, or a plain number)"
        )
    return int(float(found.group(1)) * units[found.group(2).lower()])


def parse_bytes(value: Any) -> Any:
    """Flink's MemorySize: ``1600m``, ``1g``, ``512 mb``, ``1048576`` (bytes)."""
    return _amount(value, _UNITS_BYTES, "memory size")


def parse_ms(value: Any) -> Any:
    """A duration in milliseconds: ``30 s``, ``5000 ms``, ``1 min``, ``1h``, ``5000``."""
    return _amount(value, _UNITS_MS, "duration")


Bytes = Annotated[int, BeforeValidator(parse_bytes)]
Millis = Annotated[int, BeforeValidator(parse_ms)]


_CLUSTER_SECTIONS: Final = frozenset({"cluster", "kafka", "redis", "security"})


def env_name(key: str) -> str:
    return "JM_" + re.sub(r"[.\-]", "_", key).upper()


def setting(
    default: Any,
    key: str,
    doc: str,
    *,
    processes: tuple[Process, ...],
    env: tuple[str, ...] = (),
    flag: str | None = None,
    option: str | None = None,
    secret: bool = False,
    **constraints: Any,
) -> Any:
    """A field of the model: its key, its environment variables (``JM_<KEY>`` first,
    then older names), the flag (argparse dest) that sets it, and who reads it."""
    extra: JsonDict = {
        "key": key,
        # The cluster's own variables keep their names (KAFKA_BOOTSTRAP_SERVERS, ...):
        # schemas/settings.py reads the same ones for the short jm commands.
        "env": list(env)
        if key.split(".", maxsplit=1)[0] in _CLUSTER_SECTIONS
        else [env_name(key), *(e for e in env if e != env_name(key))],
        "flag": flag,
        "option": option or (("--" + flag.replace("_", "-")) if flag else None),
        "processes": [str(p) for p in processes],
        "secret": secret,
    }
    if callable(default):
        return Field(default_factory=default, description=doc, json_schema_extra=extra,
                     **constraints)  # fmt: skip
    return Field(default, description=doc, json_schema_extra=extra, **constraints)


def _default_slots() -> int:
    return max(1, os.cpu_count() or 1)


class JobManagerSettings(BaseSettings):
    """Every setting of the coordinator and the worker (docs/configuration.md)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    # ---- cluster: where the cluster lives (schemas/settings.py ClusterSettings reads
    # the same variables for the short jm commands)
    cluster_id: str = setting("jm", "cluster.id", "Namespaces the topics, transactional ids, "
                              "consumer groups and Redis keys.", processes=BOTH,
                              env=("JM_CLUSTER_ID",), flag="cluster_id")  # fmt: skip
    bootstrap_servers: str = setting(
        "127.0.0.1:9092", "kafka.bootstrap-servers", "Kafka's bootstrap servers.",
        processes=BOTH, env=("KAFKA_BOOTSTRAP_SERVERS", "JM_BOOTSTRAP_SERVERS"),
        flag="bootstrap_servers",
    )  # fmt: skip
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0", "redis.url", "Redis (the leader lease); its password "
        "is masked wherever it is shown.", processes=BOTH, env=("REDIS_URL", "JM_REDIS_URL"),
        flag="redis_url", secret=True,
    )  # fmt: skip
    signing_keys: str = setting(
        "", "security.signing-keys.file", "Key file of signed records (docs/security.md); "
        "empty: none given.", processes=BOTH, env=("JM_SIGNING_KEYS_FILE",), flag="signing_keys",
    )  # fmt: skip

    # ---- jobmanager: the coordinator's memory, retention and journal
    memory_process_size: Bytes = setting(
        "512m", "jobmanager.memory.process.size", "Memory budget of one coordinator process "
        "(Kubernetes limit). Start-up is refused when the limits below need more "
        "(docs/memory.md).", processes=COORDINATOR, gt=0,
    )  # fmt: skip
    max_jobs: int = setting(
        MAX_JOBS, "jobmanager.jobs.max", "Jobs held in memory at once, ended ones until "
        f"archived (at most {MAX_JOBS:,}, MAX_JOBS); a submission beyond it is rejected.",
        processes=COORDINATOR, ge=1, le=MAX_JOBS,
    )  # fmt: skip
    max_subtasks: int = setting(
        MAX_SUBTASKS, "jobmanager.subtasks.max", "Subtasks of all the jobs held at once "
        f"(at most {MAX_SUBTASKS:,}, MAX_SUBTASKS); a submission that would pass it is "
        "rejected.", processes=COORDINATOR, ge=1, le=MAX_SUBTASKS,
    )  # fmt: skip
    ended_jobs_max_age_ms: Millis = setting(
        3_600_000, "jobmanager.retention.ended-jobs.max-age", "An ended job leaves memory "
        "(archived: it stays in the journal, replayable) this long after it ended.",
        processes=COORDINATOR, flag="archive_after_ms", ge=0,
    )  # fmt: skip
    ended_jobs_max_count: int = setting(
        1_000, "jobmanager.retention.ended-jobs.max-count", "At most this many ended jobs "
        "stay in memory; past it the one that ended first is archived at once.",
        processes=COORDINATOR, ge=0,
    )  # fmt: skip
    snapshot_every_events: int = setting(
        10_000, "jobmanager.snapshot.every-events", "A state snapshot after this many "
        "journal events (docs/ha.md).", processes=COORDINATOR, flag="snapshot_every_events", gt=0,
    )  # fmt: skip
    snapshot_every_ms: Millis = setting(
        60_000, "jobmanager.snapshot.interval", "A state snapshot at least this often while "
        "events arrive.", processes=COORDINATOR, flag="snapshot_every_ms", gt=0,
    )  # fmt: skip
    snapshot_ladder_every: int = setting(
        10_000, "jobmanager.snapshot.ladder.every", "Keep the newest snapshot of every "
        "window of this many journal offsets: jm replay --until / --to-offset start from "
        "the newest one before the target (docs/ha.md).", processes=COORDINATOR,
        flag="snapshot_ladder_every", gt=0,
    )  # fmt: skip
    snapshot_ladder_rungs: int = setting(
        100, "jobmanager.snapshot.ladder.rungs", "How many of those windows keep a snapshot "
        "(compaction removes older ones).", processes=COORDINATOR,
        flag="snapshot_ladder_rungs", gt=0,
    )  # fmt: skip
    artifact_retention_ms: Millis = setting(
        3_600_000, "jobmanager.artifacts.retention", "A job's user-code package is deleted "
        "from the blob store this long after the last job using it ended "
        "(docs/user-code.md).", processes=COORDINATOR, flag="artifact_retention_ms", ge=0,
    )  # fmt: skip
    max_batch: int = setting(
        500, "jobmanager.max-batch", "Inputs the leader decides in one Kafka transaction.",
        processes=COORDINATOR, flag="max_batch", gt=0,
    )  # fmt: skip
    allow_checkpointing: bool = setting(
        True, "jobmanager.allow-checkpointing", "Accept jobs that enable checkpointing; "
        "false rejects them with the reason.", processes=COORDINATOR, flag="allow_checkpointing",
    )  # fmt: skip
    checkpoint_interval_ms: Millis = setting(
        0, "execution.checkpointing.interval", "The checkpoint interval of a job whose "
        "checkpoint_config does not set interval_ms (a job that sets it, 0 included, keeps "
        "its own); filled in where the job enters (POST /jobs on this coordinator, jm submit "
        "from its own settings), so the journaled JobSubmitted carries it. 0: none.",
        processes=COORDINATOR, ge=0,
    )  # fmt: skip

    # ---- high availability and heartbeats (docs/ha.md: checked against each other)
    lease_ttl_ms: Millis = setting(
        timing.DEFAULT_LEASE_TTL_MS, "high-availability.lease.ttl", "Time to live of the "
        "leader lease in Redis.", processes=COORDINATOR, flag="lease_ttl_ms", gt=0,
    )  # fmt: skip
    heartbeat_timeout_ms: Millis = setting(
        timing.DEFAULT_COORDINATOR_HEARTBEAT_TIMEOUT_MS, "heartbeat.timeout", "The leader "
        "declares a worker lost after this long without a heartbeat.", processes=COORDINATOR,
        flag="heartbeat_timeout_ms", gt=0,
    )  # fmt: skip
    heartbeat_interval_ms: Millis = setting(
        int(timing.DEFAULT_WORKER_HEARTBEAT_INTERVAL_S * 1000), "heartbeat.interval",
        "Time between a worker's heartbeats.", processes=WORKER, flag="heartbeat_interval_s",
        option="--heartbeat-interval",
        env=("JM_WORKER_HEARTBEAT_INTERVAL_S",), gt=0,
    )  # fmt: skip
    leader_timeout_ms: Millis = setting(
        int(timing.DEFAULT_WORKER_LEADER_TIMEOUT_S * 1000), "taskmanager.leader.timeout",
        "A worker stops every task after this long without hearing a leader.",
        processes=WORKER, flag="heartbeat_timeout_s", option="--heartbeat-timeout",
        env=("JM_WORKER_HEARTBEAT_TIMEOUT_S",), gt=0,
    )  # fmt: skip

    # ---- scheduling and state
    slot_wait_timeout_ms: Millis = setting(
        300_000, "slot.request.timeout", "A job waiting this long for slots fails.",
        processes=COORDINATOR, flag="slot_wait_timeout_ms", gt=0,
    )  # fmt: skip
    state_checkpoints_dir: str = setting(
        "kafka", "state.checkpoints.dir", "Where tasks write checkpoint state: kafka (the "
        "cluster's state topic) or file:///dir. The coordinator exports savepoints from it.",
        processes=BOTH, flag="state_checkpoints_dir", env=("JM_WORKER_STATE_CHECKPOINTS_DIR",),
        min_length=1,
    )  # fmt: skip
    default_savepoint_dir: str = setting(
        "savepoints", "state.savepoints.dir", "Where a savepoint naming no target goes.",
        processes=COORDINATOR, flag="default_savepoint_dir", min_length=1,
    )  # fmt: skip

    # ---- taskmanager: the worker
    tm_id: str = setting(
        "", "taskmanager.id", "The worker's id; empty: host name plus a random suffix.",
        processes=WORKER, flag="tm_id", option="--id", env=("JM_WORKER_TM_ID",), max_length=100,
    )  # fmt: skip
    slots: int = setting(
        _default_slots, "taskmanager.numberOfTaskSlots", "Task slots of a worker "
        "(default: its CPUs).", processes=WORKER, flag="slots", env=("JM_WORKER_SLOTS",),
        ge=1, le=1024,
    )  # fmt: skip
    cancel_timeout_ms: Millis = setting(
        int(timing.DEFAULT_WORKER_CANCEL_TIMEOUT_S * 1000), "task.cancellation.timeout",
        "A slot process whose task ignores a cancel this long is killed.", processes=WORKER,
        flag="cancel_timeout_s", option="--cancel-timeout",
        env=("JM_WORKER_CANCEL_TIMEOUT_S",), gt=0,
    )  # fmt: skip

    artifact_cache_dir: str = setting(
        "", "taskmanager.artifacts.cache-dir", "Where jobs' user-code packages are "
        "installed, one directory per sha256; empty: <temp dir>/jm-artifacts/<id>.",
        processes=WORKER, flag="artifact_cache_dir", env=("JM_WORKER_ARTIFACT_CACHE_DIR",),
    )  # fmt: skip
    package_index: str = setting(
        "", "taskmanager.package-index", "Package index (pip --index-url) for the "
        "requirements a job's code declares; empty: offline, a requirement not installed "
        "on the worker is refused.", processes=WORKER, flag="package_index",
        env=("JM_WORKER_PACKAGE_INDEX",),
    )  # fmt: skip

    # ---- rest: the coordinator's REST API (docs/rest.md)
    rest_address: str = setting(
        "127.0.0.1", "rest.address", "Address the REST API listens on.",
        processes=COORDINATOR, flag="rest_host", env=("JM_REST_HOST",),
    )  # fmt: skip
    rest_port: int = setting(
        8081, "rest.port", "REST port (0 picks a free one and prints it).",
        processes=COORDINATOR, flag="rest_port", ge=0, le=65_535,
    )  # fmt: skip
    rest_token: str = setting(
        "", "rest.token", "Token mutating REST requests need (empty: none); masked "
        "wherever shown. --rest-token-file reads it from a file instead.",
        processes=COORDINATOR, secret=True,
    )  # fmt: skip

    # ---- historyserver: where the coordinator finds the job history server (docs/history.md)
    history_url: str = setting(
        "", "historyserver.web.url", "Base URL of the job history server (jm history), e.g. "
        "http://127.0.0.1:8083: the coordinator relays its archive under /history/ and the "
        "dashboard lists archived jobs from it; empty: none.", processes=COORDINATOR,
        flag="history_url", pattern=r"^(https?://[^\s/]+(/\S*)?)?$",
    )  # fmt: skip
    history_timeout_ms: Millis = setting(
        5_000, "historyserver.web.timeout", "How long the coordinator waits for the history "
        "server's answer before it answers 502.", processes=COORDINATOR, gt=0,
    )  # fmt: skip

    # ---- telemetry: OpenTelemetry exporters (docs/observability.md); all off by default
    otel_console: bool = setting(
        False, "telemetry.console", "Spans and metrics as JSON on stderr.", processes=BOTH,
        flag="otel_console", env=("JM_OTEL_CONSOLE",),
    )  # fmt: skip
    otel_otlp_endpoint: str = setting(
        "", "telemetry.otlp.endpoint", "OTLP/HTTP collector base URL, e.g. "
        "http://127.0.0.1:4318 (spans and metrics); empty: none.", processes=BOTH,
        flag="otel_otlp_endpoint", env=("JM_OTEL_OTLP_ENDPOINT",),
    )  # fmt: skip
    otel_prometheus_port: int = setting(
        -1, "telemetry.prometheus.port", "Serve Prometheus metrics at "
        "http://<host>:<port>/metrics (0: any free port; -1: no endpoint).", processes=BOTH,
        flag="otel_prometheus_port", env=("JM_OTEL_PROMETHEUS_PORT",), ge=-1, le=65_535,
    )  # fmt: skip
    otel_prometheus_host: str = setting(
        "127.0.0.1", "telemetry.prometheus.host", "Address of the Prometheus endpoint.",
        processes=BOTH, flag="otel_prometheus_host", env=("JM_OTEL_PROMETHEUS_HOST",),
    )  # fmt: skip
    otel_file: str = setting(
        "", "telemetry.file", "Append spans and metrics as JSON lines to this file (tests, "
        "offline inspection); empty: none.", processes=BOTH, flag="otel_file",
        env=("JM_OTEL_FILE",),
    )  # fmt: skip
    otel_metrics_interval_ms: Millis = setting(
        10_000, "telemetry.metrics.interval", "How often metrics are exported to console, "
        "OTLP and file.", processes=BOTH, flag="otel_metrics_interval_ms",
        env=("JM_OTEL_METRICS_INTERVAL_MS",), ge=100,
    )  # fmt: skip

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file, the environment and the flags are merged by `effective`, which
        # remembers where each value came from; the model validates the result.
        return (init_settings,)


@dataclass(frozen=True)
class Entry:
    """One setting as the model declares it."""

    name: str
    key: str
    doc: str
    env: tuple[str, ...]
    flag: str | None  # the argparse dest
    option: str | None  # the flag as typed
    processes: tuple[Process, ...]
    secret: bool
    info: FieldInfo

    @property
    def default(self) -> Any:
        if self.info.default_factory is not None:
            return None  # computed at start (CPUs, host name)
        return self.info.default


def entries() -> list[Entry]:
    found = []
    for name, info in JobManagerSettings.model_fields.items():
        extra = cast(dict[str, Any], info.json_schema_extra)
        found.append(
            Entry(
                name=name,
                key=str(extra["key"]),
                doc=info.description or "",
                env=tuple(extra["env"]),
                flag=extra["flag"],
                option=extra["option"],
                processes=tuple(extra["processes"]),
                secret=bool(extra["secret"]),
                info=info,
            )
        )
    return found


BY_KEY: Final = {e.key: e for e in entries()}
BY_FLAG: Final = {e.flag: e for e in entries() if e.flag}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        # A nested map whose own key is a setting (none is a map) is flattened further.
        flat.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
    return flat


def read_file(path: str) -> dict[str, Any]:
    """Key -> value of a YAML config file (flat or nested keys); unknown keys refused."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as err:
        raise ConfigError(f"config file {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: a map of keys to values expected")
    flat = _flatten(data)
    unknown = sorted(k for k in flat if k not in BY_KEY)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)} "
                          f"(docs/configuration.md lists them)")  # fmt: skip
    return flat


def parse_dynamic(pairs: Iterable[str]) -> dict[str, str]:
    """``-D key=value`` flags (Flink's dynamic properties)."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in BY_KEY:
            why = "KEY=VALUE expected" if not sep else f"unknown key {key!r}"
            raise ConfigError(f"-D {pair}: {why} (docs/configuration.md lists the keys)")
        found[key] = value.strip()
    return found


@dataclass(frozen=True)
class Effective:
    """The settings a process runs with, and where each came from."""

    settings: JobManagerSettings
    sources: dict[str, str]  # key -> "default" | "file PATH" | "env NAME" | "flag --x"

    def rows(self, process: Process | None = None) -> list[tuple[str, str, str]]:
        """(key, value as shown, source) of every setting of `process`, secrets masked."""
        rows = []
        for e in entries():
            if process is not None and process not in e.processes:
                continue
            value = getattr(self.settings, e.name)
            rows.append((e.key, mask(e, value), self.sources[e.key]))
        return rows


def mask(entry: Entry, value: Any) -> str:
    """`value` as shown: secrets masked, durations in ms, memory sizes in MiB."""
    if isinstance(value, bool):
        return str(value).lower()
    validators = [getattr(m, "func", None) for m in entry.info.metadata]
    if parse_ms in validators:
        return f"{value} ms"
    if parse_bytes in validators:
        return f"{value // (1 << 20)}m" if value % (1 << 20) == 0 else f"{value} bytes"
    if not entry.secret or value in ("", None):
        return str(value)
    if entry.key == "redis.url":
        from schemas.security import mask_url

        return mask_url(str(value))
    return "******"


def _env_value(names: tuple[str, ...], environ: Mapping[str, str]) -> tuple[str, str] | None:
    for name in names:
        if name in environ:
            return name, environ[name]
    upper = {k.upper(): k for k in environ}
    for name in names:
        if name in upper:
            return upper[name], environ[upper[name]]
    return None


def effective(
    *,
    config_file: str | None = None,
    flags: Mapping[str, Any] | None = None,
    dynamic: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Effective:
    """Defaults < file < environment < flags. `flags`: argparse dests (None: not given);
    `dynamic`: ``-D key=value`` strings. Raises ConfigError saying which value is bad."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    sources = {e.key: "default" for e in entries()}
    path = config_file or environ.get(CONFIG_FILE_ENV) or None
    if path:
        for key, value in read_file(path).items():
            raw[key], sources[key] = value, f"file {path}"
    for e in entries():
        found = _env_value(e.env, environ)
        if found is not None:
            value = found[1]
            if found[0].upper().endswith("_S") and _PLAIN.fullmatch(value):
                value = f"{value} s"  # the worker's older variables, in seconds
            raw[e.key], sources[e.key] = value, f"env {found[0]}"
    for dest, value in (flags or {}).items():
        by_flag = BY_FLAG.get(dest)
        if by_flag is None or value is None:
            continue
        e = by_flag
        seconds = dest.endswith("_s")  # the worker's flags in seconds
        raw[e.key] = f"{value} s" if seconds else value
        sources[e.key] = f"flag {e.option}"
    for key, value in parse_dynamic(dynamic).items():
        raw[key], sources[key] = value, f"flag -D {key}"
    by_name = {BY_KEY[k].name: v for k, v in raw.items()}
    try:
        settings = JobManagerSettings(**by_name)
    except ValidationError as err:
        raise ConfigError("; ".join(_problem(p, sources) for p in err.errors())) from None
    return Effective(settings, sources)


def _problem(error: Any, sources: Mapping[str, str]) -> str:
    name = str(error["loc"][0]) if error["loc"] else ""
    e = next((x for x in entries() if x.name == name), None)
    if e is None:
        return str(error["msg"])
    shown = "******" if e.secret else repr(error.get("input"))
    return f"{e.key} = {shown} ({sources[e.key]}): {error['msg']}"


def from_args(args: argparse.Namespace) -> Effective:
    return effective(config_file=args.config, flags=vars(args), dynamic=args.dynamic)


def render() -> str:
    """docs/configuration.md, generated from the model."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from schemas/config.py by `python -m schemas.config --write`; "
        "tests/test_config.py fails when it differs. Do not edit by hand. -->",
        "",
        "The coordinator (`jm coordinator`) and the worker (`jm worker`) read their settings",
        "from one model, `schemas/config.py`. Each setting is looked up, the later winning:",
        "",
        "1. its default;",
        f"2. the YAML config file given by `--config FILE` (else `${CONFIG_FILE_ENV}`), with",
        "   flat Flink keys (`rest.port: 8081`) or nested maps (`rest: {port: 8081}`);",
        "   an unknown key is refused;",
        "3. the environment variables listed (the first one set);",
        "4. the command line: `-D key=value` (repeatable) or the flag listed.",
        "",
        "So flags win over the environment, which wins over the file, which wins over",
        "the defaults. `jm config show [--for coordinator|worker] [--config FILE] [-D k=v]`",
        "prints the effective value of every setting and where it came from, secrets",
        "masked. Durations take `ms`, `s`, `min`, `h`, `d` (a plain number is milliseconds);",
        "memory sizes take `k`, `m`, `g`, `t` (a plain number is bytes).",
        "",
        "| key | default | environment | flag | read by | what |",
        "|---|---|---|---|---|---|",
    ]
    defaults = JobManagerSettings()  # init values only: no environment read
    for e in entries():
        shown = mask(e, getattr(defaults, e.name)) or '""'
        default = "computed" if e.info.default_factory is not None else shown
        flag = e.option or ""
        env = ", ".join(f"`{v}`" for v in e.env)
        lines.append(
            f"| `{e.key}` | `{default}` | {env} | {f'`{flag}`' if flag else ''} | "
            f"{', '.join(e.processes)} | {e.doc} |"
        )
    from schemas import security

    lines += [
        "",
        "## Kafka SASL/TLS",
        "",
        "Read by every process that connects to Kafka (`schemas/security.py`, described in",
        "[security.md](security.md)), from the flag, else the environment, else the default;",
        "neither the config file nor `-D` sets them. `jm config show` lists them after the",
        "settings above, with their source, the password masked.",
        "",
        "| key | default | environment | flag |",
        "|---|---|---|---|",
    ]
    for key, field_name, default in security.SHOWN:
        flag = security.shown_flag(field_name)
        shown = default or '""'
        lines.append(
            f"| `{key}` | `{shown}` | `{security.shown_env(field_name)}` | "
            f"{f'`{flag}`' if flag else ''} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.config")
    parser.add_argument("--write", action="store_true", help=f"rewrite {DOC}")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when {DOC} differs")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC.write_text(text, encoding="utf-8")
    elif args.check:
        if DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} differs from the model: python -m schemas.config --write",
                  file=sys.stderr)  # fmt: skip
            return 1
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
