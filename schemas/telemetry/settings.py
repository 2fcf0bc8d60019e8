"""Exporter settings of one process: ``JM_OTEL_*`` environment, ``--otel-*`` flags
(schemas/telemetry/flags.py).

Flags win over the environment, which wins over the defaults. With no exporter
chosen, telemetry is off: no provider is built, no instrument exists, and the
runtime skips every telemetry call (one ``is None`` test).
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TelemetrySettings(BaseSettings):
    """Which exporters a coordinator or worker feeds (all off by default)."""

    model_config = SettingsConfigDict(env_prefix="JM_OTEL_", frozen=True, extra="ignore")

    #: Spans and metrics as JSON on stderr (stdout carries the process's own lines).
    console: bool = False
    #: OTLP/HTTP collector base URL, e.g. http://127.0.0.1:4318 (spans and metrics).
    otlp_endpoint: str | None = None
    #: Serve Prometheus metrics at http://<prometheus_host>:<port>/metrics (0: any free port).
    prometheus_port: int | None = Field(default=None, ge=0, le=65535)
    prometheus_host: str = "127.0.0.1"
    #: Append spans and metrics as JSON lines to this file (tests, offline inspection).
    file: str | None = None
    #: How often metrics are exported to console, OTLP and file, ms.
    metrics_interval_ms: int = Field(default=10_000, ge=100)
    #: The service.name resource attribute (default: jm-coordinator or jm-worker).
    service_name: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(
            self.console or self.otlp_endpoint or self.file or self.prometheus_port is not None
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TelemetrySettings:
        """Environment first, then the ``--otel-*`` flags that were given."""
        given: dict[str, Any] = {
            "console": True if getattr(args, "otel_console", False) else None,
            "otlp_endpoint": getattr(args, "otel_otlp_endpoint", None),
            "prometheus_port": getattr(args, "otel_prometheus_port", None),
            "prometheus_host": getattr(args, "otel_prometheus_host", None),
            "file": getattr(args, "otel_file", None),
            "metrics_interval_ms": getattr(args, "otel_metrics_interval_ms", None),
        }
        return cls(**{k: v for k, v in given.items() if v is not None})
