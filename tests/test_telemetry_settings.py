"""Telemetry settings and containment, without processes (the real-process test is
tests/integration/test_telemetry.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.context import Context

from schemas.config import from_args
from schemas.settings import add_config_flags
from schemas.telemetry import ids
from schemas.telemetry.contained import contained
from schemas.telemetry.flags import add_flags
from schemas.telemetry.providers import Telemetry
from schemas.telemetry.settings import TelemetrySettings

REPO = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> TelemetrySettings:
    """The telemetry part of the settings model, as `jm coordinator` reads it."""
    parser = argparse.ArgumentParser()
    add_flags(parser)
    add_config_flags(parser)
    return TelemetrySettings.of(from_args(parser.parse_args(argv)).settings)


def test_off_by_default_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONSOLE", "OTLP_ENDPOINT", "PROMETHEUS_PORT", "FILE"):
        monkeypatch.delenv(f"JM_OTEL_{name}", raising=False)
    settings = parse()
    assert not settings.enabled
    assert Telemetry.start(settings, "jm-test") is None


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JM_OTEL_FILE", "/from/env.jsonl")
    monkeypatch.setenv("JM_OTEL_METRICS_INTERVAL_MS", "2000")
    settings = parse("--otel-file", "/from/flag.jsonl")
    assert settings.enabled
    assert (settings.file, settings.metrics_interval_ms) == ("/from/flag.jsonl", 2000)
    with pytest.raises(ValueError, match=r"telemetry\.prometheus\.port"):
        parse("--otel-prometheus-port", "70000")


def test_a_failing_entry_point_is_contained_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @contained
    def broken(x: int) -> int:
        raise RuntimeError(f"exporter gone {x}")

    with caplog.at_level(logging.WARNING):
        assert broken(1) is None
        assert broken(2) is None
    assert [r.getMessage() for r in caplog.records].count(
        f"telemetry {broken.__qualname__} failed (contained; logged once)"
    ) == 1


def test_pinned_ids_and_the_w3c_header(tmp_path: Path) -> None:
    """A job's span gets the ids every process derives from the job id, and the header
    names it as the parent."""
    out = tmp_path / "spans.jsonl"
    otel = Telemetry.start(TelemetrySettings(file=str(out)), "jm-test")
    assert otel is not None
    trace, span_id = ids.job_trace("c", "job-1"), ids.job_span("c", "job-1")
    with ids.pinned(trace, span_id):
        span = otel.tracer.start_span("job.submit", context=Context())
    span.end()
    otel.shutdown()
    [line] = [json.loads(x) for x in out.read_text().splitlines() if '"job.submit"' in x]
    assert line["context"]["trace_id"] == f"0x{trace:032x}"
    assert line["context"]["span_id"] == f"0x{span_id:016x}"
    key, value = ids.traceparent(trace, span_id)
    assert (key, value.decode()) == ("traceparent", f"00-{trace:032x}-{span_id:016x}-01")
    parent = ids.extract([(key, value)])
    assert parent is not None
    assert ids.extract([("traceparent", b"garbage")]) is None
    assert ids.extract(None) is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["coordinator", "--no-rest"], "jm: coordinator: telemetry.prometheus.port = 70000"),
        (["worker", "--id", "tm"], "jm worker: telemetry.prometheus.port = 70000"),
    ],
)
def test_a_bad_exporter_setting_stops_the_process_at_start(argv: list[str], expected: str) -> None:
    """Refused before any Kafka client starts (the broker address answers nothing)."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "coordinator", *argv, "--bootstrap-servers", "127.0.0.1:1",
               "--insecure-unsigned", "--otel-prometheus-port", "70000"]  # fmt: skip
    if argv[0] == "coordinator":
        command += ["--id", "c"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": path}, check=False)  # fmt: skip
    assert done.returncode in (1, 2), done.stderr
    assert expected in done.stderr and "(flag --otel-prometheus-port)" in done.stderr, done.stderr
