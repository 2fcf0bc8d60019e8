"""The tracer and meter providers one process exports through, by its settings.

``Telemetry.start`` builds them only when an exporter is chosen (else returns
None). Spans are batched and exported from the SDK's own thread; metrics are
read by a periodic reader (console, OTLP, file) or when Prometheus scrapes.
``shutdown`` flushes what is pending. Nothing here raises into the caller once
started: exporter failures are the SDK's to log.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Tracer

from schemas.telemetry.ids import PinnableIdGenerator
from schemas.telemetry.settings import TelemetrySettings

log = logging.getLogger(__name__)

SCOPE = "kafka-jobmanager"


def _span_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _metrics_line(data: MetricsData) -> str:
    return data.to_json(indent=None) + "\n"


class _LockedFile:
    """One append-mode file shared by the span and the metric exporter, line by line."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            written = self._file.write(text)
            self._file.flush()
            return written

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


@dataclass
class Telemetry:
    """One process's providers; `tracer` and `meter` are what the runtime uses."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    tracer: Tracer
    meter: Meter
    #: Where Prometheus scrapes, if it does: (host, port).
    prometheus: tuple[str, int] | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def start(cls, settings: TelemetrySettings, service: str,
              attributes: dict[str, Any] | None = None) -> Telemetry | None:  # fmt: skip
        """Providers for the chosen exporters; None when telemetry is off."""
        if not settings.enabled:
            return None
        resource = Resource.create({"service.name": service, **(attributes or {})})
        spans: list[SpanExporter] = []
        metrics: list[MetricExporter] = []
        readers: list[MetricReader] = []
        closers: list[Callable[[], None]] = []
        immediate: list[SpanExporter] = []  # file: written as each span ends
        if settings.console:
            out: IO[str] = sys.stderr
            spans.append(ConsoleSpanExporter(out=out, formatter=_span_line))
            metrics.append(ConsoleMetricExporter(out=out, formatter=_metrics_line))
        if settings.file:
            shared = _LockedFile(settings.file)
            closers.append(shared.close)
            immediate.append(ConsoleSpanExporter(out=shared, formatter=_span_line))  # type: ignore[arg-type]
            metrics.append(ConsoleMetricExporter(out=shared, formatter=_metrics_line))  # type: ignore[arg-type]
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            base = settings.otlp_endpoint.rstrip("/")
            spans.append(OTLPSpanExporter(endpoint=f"{base}/v1/traces"))
            metrics.append(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
        prometheus = None
        if settings.prometheus_port is not None:
            prometheus, reader, stop = _prometheus(settings)
            readers.append(reader)
            closers.append(stop)
        interval = settings.metrics_interval_ms
        readers.extend(
            PeriodicExportingMetricReader(m, export_interval_millis=interval) for m in metrics
        )
        tracer_provider = TracerProvider(resource=resource, id_generator=PinnableIdGenerator())
        for exporter in spans:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        for exporter in immediate:
            tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        return cls(
            tracer_provider, meter_provider, tracer_provider.get_tracer(SCOPE),
            meter_provider.get_meter(SCOPE), prometheus, closers,
        )  # fmt: skip

    def shutdown(self) -> None:
        """Flush and stop every exporter (spans first: the metrics' last read follows)."""
        for stop in (self.tracer_provider.shutdown, self.meter_provider.shutdown, *self._closers):
            try:
                stop()
            except Exception:  # telemetry never fails a shutdown
                log.warning("telemetry shutdown step failed", exc_info=True)


def _prometheus(
    settings: TelemetrySettings,
) -> tuple[tuple[str, int], MetricReader, Callable[[], None]]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry)
    port = settings.prometheus_port or 0
    server, thread = start_http_server(port, addr=settings.prometheus_host, registry=registry)
    bound = (settings.prometheus_host, int(server.server_port))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return bound, reader, stop


def start_from_settings(
    settings: TelemetrySettings, service: str, instance: str, cluster_id: str
) -> Telemetry | None:
    """A process's exporters by its ``telemetry.*`` settings (None: telemetry off).
    Prints ``prometheus http://host:port/metrics`` when it serves a scrape endpoint.
    Raises ValueError (pydantic's ValidationError) or OSError (port taken)."""
    otel = Telemetry.start(
        settings, service,
        {"service.instance.id": instance, "jm.cluster": cluster_id},
    )  # fmt: skip
    if otel is not None and otel.prometheus is not None:
        host, port = otel.prometheus
        print(f"prometheus http://{host}:{port}/metrics", flush=True)
    return otel
