"""OpenTelemetry for the coordinator and the worker (docs/observability.md).

Shared by both processes and free of any domain knowledge: the exporter settings
(``settings``), the providers and exporters they select (``providers``), and the
trace and span ids derived from job and checkpoint ids, carried to workers in
W3C ``traceparent`` Kafka headers (``ids``). What is traced and measured lives at
the runtime edges: coordinator/runtime/telemetry.py and worker/telemetry.py. The
pure core (coordinator/domain) never imports any of it.
"""
