"""Exporter settings of one process: the ``telemetry.*`` keys of the settings model
(schemas/config.py: config file, ``JM_OTEL_*`` environment, ``--otel-*`` flags of
schemas/telemetry/flags.py, flags winning).

With no exporter chosen, telemetry is off: no provider is built, no instrument
exists, and the runtime skips every telemetry call (one ``is None`` test).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from schemas.config import JobManagerSettings


class TelemetrySettings(BaseModel):
    """Which exporters a coordinator or worker feeds (all off by default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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

    @property
    def enabled(self) -> bool:
        return bool(
            self.console or self.otlp_endpoint or self.file or self.prometheus_port is not None
        )

    @classmethod
    def of(cls, c: JobManagerSettings) -> TelemetrySettings:
        """The ``telemetry.*`` part of the effective settings."""
        return cls(
            console=c.otel_console,
            otlp_endpoint=c.otel_otlp_endpoint or None,
            prometheus_port=None if c.otel_prometheus_port < 0 else c.otel_prometheus_port,
            prometheus_host=c.otel_prometheus_host,
            file=c.otel_file or None,
            metrics_interval_ms=c.otel_metrics_interval_ms,
        )
