"""The ``--otel-*`` flags of ``jm coordinator`` and ``jm worker`` (standard library only:
``jm --help`` imports no OpenTelemetry); the settings model (schemas/config.py) reads them."""

from __future__ import annotations

import argparse


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--otel-*`` flags (each overrides its ``JM_OTEL_*`` variable)."""
    group = parser.add_argument_group("OpenTelemetry (docs/observability.md)")
    group.add_argument("--otel-console", action="store_true", default=None,
                       help="spans and metrics as JSON on stderr ($JM_OTEL_CONSOLE)")  # fmt: skip
    group.add_argument("--otel-otlp-endpoint", metavar="URL",
                       help="OTLP/HTTP collector, e.g. http://127.0.0.1:4318 "
                            "($JM_OTEL_OTLP_ENDPOINT)")  # fmt: skip
    group.add_argument("--otel-prometheus-port", type=int, metavar="PORT",
                       help="serve Prometheus metrics on this port, 0 for any "
                            "($JM_OTEL_PROMETHEUS_PORT)")  # fmt: skip
    group.add_argument("--otel-prometheus-host", metavar="HOST",
                       help="address of the Prometheus endpoint (default 127.0.0.1; "
                            "$JM_OTEL_PROMETHEUS_HOST)")  # fmt: skip
    group.add_argument("--otel-file", metavar="PATH",
                       help="append spans and metrics as JSON lines to PATH "
                            "($JM_OTEL_FILE)")  # fmt: skip
    group.add_argument("--otel-metrics-interval-ms", type=int, metavar="MS",
                       help="metrics export interval (default 10000; "
                            "$JM_OTEL_METRICS_INTERVAL_MS)")  # fmt: skip
