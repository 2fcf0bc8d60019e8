"""Trace and span ids derived from job and checkpoint ids, and their W3C headers.

A job's trace id and the id of its ``job.submit`` span are functions of the
cluster and job ids, a checkpoint's of the job and checkpoint ids, a task
deployment's of its task attempt. So every process (any leader of any epoch,
any worker) names the same trace for the same job without asking anyone: a
leader that takes over puts its deployments into the job's trace, and a
checkpoint's trace links to its job's span. Kafka records carry the context as
a W3C ``traceparent`` header (version 00), which workers extract.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: The Kafka header that carries the W3C trace context.
TRACEPARENT = "traceparent"

_propagator = TraceContextTextMapPropagator()


def _digest(size: int, *parts: object) -> int:
    text = "\0".join(str(p) for p in parts).encode()
    value = int.from_bytes(hashlib.blake2b(text, digest_size=size).digest(), "big")
    return value or 1  # zero is the invalid id


def job_trace(cluster_id: str, job_id: str) -> int:
    return _digest(16, "job-trace", cluster_id, job_id)


def job_span(cluster_id: str, job_id: str) -> int:
    return _digest(8, "job-span", cluster_id, job_id)


def deploy_span(cluster_id: str, job_id: str, vertex_id: str, subtask: int, attempt: int) -> int:
    return _digest(8, "deploy-span", cluster_id, job_id, vertex_id, subtask, attempt)


def checkpoint_trace(cluster_id: str, job_id: str, checkpoint_id: int) -> int:
    return _digest(16, "checkpoint-trace", cluster_id, job_id, checkpoint_id)


def checkpoint_span(cluster_id: str, job_id: str, checkpoint_id: int) -> int:
    return _digest(8, "checkpoint-span", cluster_id, job_id, checkpoint_id)


def span_context(trace_id: int, span_id: int) -> SpanContext:
    """The context of a span known by its ids (ours, possibly in another process)."""
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))


def as_parent(context: SpanContext) -> Context:
    return set_span_in_context(NonRecordingSpan(context))


def traceparent(trace_id: int, span_id: int) -> tuple[str, bytes]:
    """The Kafka header naming span `span_id` of trace `trace_id` as the parent."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, as_parent(span_context(trace_id, span_id)))
    return TRACEPARENT, carrier[TRACEPARENT].encode()


def extract(headers: Iterable[tuple[str, bytes | None]] | None) -> Context | None:
    """The parent context a record's ``traceparent`` header names (None: none, or invalid)."""
    for key, value in headers or ():
        if key == TRACEPARENT and value:
            context = _propagator.extract({TRACEPARENT: value.decode(errors="replace")})
            return context if context else None
    return None


_pinned: ContextVar[tuple[int | None, int | None]] = ContextVar("pinned", default=(None, None))


class PinnableIdGenerator(RandomIdGenerator):
    """Random ids, except those ``pinned`` for the span being started."""

    def __init__(self) -> None:
        self._random = random.Random()

    def generate_span_id(self) -> int:
        pinned = _pinned.get()[1]
        return pinned if pinned is not None else self._random.getrandbits(64) or 1

    def is_trace_id_random(self) -> bool:
        return _pinned.get()[0] is None

    def generate_trace_id(self) -> int:
        pinned = _pinned.get()[0]
        return pinned if pinned is not None else self._random.getrandbits(128) or 1


@contextmanager
def pinned(trace_id: int | None, span_id: int | None) -> Iterator[None]:
    """Spans started inside take these ids (a trace id only applies to a root span)."""
    token = _pinned.set((trace_id, span_id))
    try:
        yield
    finally:
        _pinned.reset(token)
