"""Checks of a job submission: size limits, then semantics. Pure and standard library only.

Used twice: by ``schemas.jobgraph`` on job files before they are sent (so
``jm submit --dry-run`` runs it), and by the coordinator's Dispatcher on every
``JobSubmitted`` it reads, because any Kafka producer may write one. Every
problem is reported with its location in the job spec
(``vertices[1].parallelism: ...``), so one round trip fixes all. The size
limits (``schemas.limits``) come first: a submission over them is not looked
at further, and no problem quotes more than ``MAX_QUOTED_BYTES`` of a value.
"""

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Final

from schemas.events import (
    CheckpointConfig,
    JobGraph,
    JobSubmitted,
    Partitioning,
    RestartStrategy,
    RestartStrategyKind,
)
from schemas.limits import MAX_MAX_PARALLELISM, input_problems, quote

#: A state handle naming a subtask's state in a savepoint directory:
#: ``savepoint:<absolute savepoint dir>/<vertex_id>-<subtask>.state``. A job
#: submitted with a savepoint path deploys its first tasks with these
#: (schemas/savepoint.py reads them; here because the pure core derives them).
SAVEPOINT_HANDLE_PREFIX: Final = "savepoint:"


def state_file_name(vertex_id: str, subtask_index: int) -> str:
    """A subtask's state file in a savepoint directory."""
    return f"{vertex_id}-{subtask_index}.state"


def savepoint_handle(path: str, vertex_id: str, subtask_index: int) -> str:
    """The handle of one subtask's state in the savepoint at `path`."""
    return (
        f"{SAVEPOINT_HANDLE_PREFIX}{path.rstrip('/')}/{state_file_name(vertex_id, subtask_index)}"
    )


# Job and vertex ids end up in Kafka topic names (edge topics), headers and
# Redis keys: keep them to characters all of those accept.
# fullmatch, not match with ^...$: "$" also matches before a trailing newline.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
MAX_PARALLELISM_LIMIT: Final = MAX_MAX_PARALLELISM  # Flink's upper bound for max parallelism
MIN_CHECKPOINT_INTERVAL_MS: Final = 10  # Flink's minimum checkpoint interval
MIN_CHECKPOINT_TIMEOUT_MS: Final = 10


def _id_problem(value: str) -> str | None:
    if not ID_PATTERN.fullmatch(value):
        return f"must match {ID_PATTERN.pattern}, got {quote(value)}"
    return None


def check_job_graph(
    graph: JobGraph, known_operators: Collection[str] | None = None
) -> Iterator[str]:
    """Problems of the graph: ids, parallelism, edges, partitioning, cycles."""
    if not graph.vertices:
        yield "vertices: must contain at least one vertex"
    first_index: dict[str, int] = {}
    for i, v in enumerate(graph.vertices):
        where = f"vertices[{i}]"
        if (p := _id_problem(v.id)) is not None:
            yield f"{where}.id: {p}"
        if v.id in first_index:
            also = first_index[v.id]
            yield f"{where}.id: duplicate vertex id {quote(v.id)} (also vertices[{also}])"
        else:
            first_index[v.id] = i
        if not v.name.strip():
            yield f"{where}.name: must not be empty"
        if (p := _id_problem(v.slot_sharing_group)) is not None:
            yield f"{where}.slot_sharing_group: {p}"
        if not v.operator.strip():
            yield f"{where}.operator: must not be empty"
        elif known_operators is not None and v.operator not in known_operators:
            yield f"{where}.operator: no worker offers operator {quote(v.operator)}"
        if not 1 <= v.max_parallelism <= MAX_PARALLELISM_LIMIT:
            yield (
                f"{where}.max_parallelism: must be between 1 and {MAX_PARALLELISM_LIMIT}, "
                f"got {v.max_parallelism}"
            )
        if not 1 <= v.parallelism <= v.max_parallelism:
            yield (
                f"{where}.parallelism: must be between 1 and max_parallelism "
                f"({v.max_parallelism}), got {v.parallelism}"
            )
    vertices = {v.id: v for v in graph.vertices}
    seen_edges: dict[tuple[str, str], int] = {}
    for i, e in enumerate(graph.edges):
        where = f"edges[{i}]"
        for end in ("source", "target"):
            name = getattr(e, end)
            if name not in vertices:
                yield f"{where}.{end}: unknown vertex {quote(name)}"
        pair = (e.source, e.target)
        if pair in seen_edges:
            also = seen_edges[pair]
            yield f"{where}: duplicate edge {e.source} -> {e.target} (also edges[{also}])"
        seen_edges.setdefault(pair, i)
        if e.partitioning is Partitioning.HASH and not e.key_field:
            yield f"{where}.key_field: required for HASH partitioning"
        if e.partitioning is not Partitioning.HASH and e.key_field is not None:
            yield f"{where}.key_field: only allowed with HASH partitioning, not {e.partitioning}"
        src, dst = vertices.get(e.source), vertices.get(e.target)
        if (
            e.partitioning is Partitioning.FORWARD
            and src is not None
            and dst is not None
            and src.parallelism != dst.parallelism
        ):
            yield (
                f"{where}.partitioning: FORWARD needs equal parallelism "
                f"({e.source}: {src.parallelism}, {e.target}: {dst.parallelism})"
            )
    cycle = find_cycle(graph)
    if cycle:
        yield f"edges: cycle {' -> '.join(cycle)}"


def find_cycle(graph: JobGraph) -> list[str]:
    """One cycle of the graph as a closed path of vertex ids, or [] if acyclic.
    Deterministic: vertices and edges are visited in declaration order."""
    succ: dict[str, list[str]] = {}
    for e in graph.edges:
        succ.setdefault(e.source, []).append(e.target)
    white, grey, black = 0, 1, 2
    color: dict[str, int] = {}
    nodes = [v.id for v in graph.vertices] + [e.source for e in graph.edges]
    for root in nodes:
        if color.get(root, white) != white:
            continue
        # Iterative DFS: job graphs from any producer may be deep.
        path = [root]
        stack = [iter(succ.get(root, ()))]
        color[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = black
                stack.pop()
            elif color.get(nxt, white) == grey:
                return [*path[path.index(nxt) :], nxt]
            elif color.get(nxt, white) == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append(iter(succ.get(nxt, ())))
    return []


#: Kafka's own topics (``__consumer_offsets``, ``__transaction_state``): no job names them.
KAFKA_INTERNAL_TOPIC_PREFIX: Final = "__"


def protected_prefixes(topic_prefix: str, configured: Iterable[str] = ()) -> tuple[str, ...]:
    """The topic prefixes no job may name: the cluster's own (``<prefix>.``: its
    journal, inputs, commands, edge, state and sink-commit topics), Kafka's internal
    ``__``, then every `configured` one (``--protected-topic-prefix``), in that order,
    without blanks or repeats."""
    found: list[str] = []
    for given in (f"{topic_prefix}.", KAFKA_INTERNAL_TOPIC_PREFIX, *configured):
        prefix = given.strip()
        if prefix and prefix not in found:
            found.append(prefix)
    return tuple(found)


def names_topics(key: str) -> bool:
    """Whether an operator config key names topics: ``topic`` (kafka_source and
    kafka_sink), or any key ending in ``topic`` or ``topics`` (a plugin's
    ``input_topic``, ``topics``); their values are comma-separated topic names."""
    return key.endswith(("topic", "topics"))


def protected_topic_problems(
    config: Mapping[str, str], prefixes: Collection[str], where: str = "config"
) -> Iterator[str]:
    """Each topic an operator `config` names under one of the protected `prefixes`."""
    for key in sorted(config):
        if not names_topics(key):
            continue
        for topic in (t.strip() for t in config[key].split(",")):
            hit = next((p for p in prefixes if topic.startswith(p)), None)
            if hit is not None:
                yield (
                    f"{where}.{key}: topic {quote(topic)} is under the protected prefix "
                    f"{quote(hit)} (the cluster's own topics and configured protected "
                    "prefixes are out of reach of jobs); use a topic of your own"
                )


def check_topics(graph: JobGraph, prefixes: Collection[str]) -> Iterator[str]:
    """Every vertex's config naming a protected topic (``protected_prefixes``)."""
    for i, v in enumerate(graph.vertices):
        yield from protected_topic_problems(v.config, prefixes, f"vertices[{i}].config")


def _at_least(where: str, name: str, value: float, minimum: float) -> Iterator[str]:
    if value < minimum:
        yield f"{where}.{name}: must be >= {minimum}, got {value}"


def check_restart_strategy(r: RestartStrategy, where: str = "restart_strategy") -> Iterator[str]:
    """Parameter ranges of the strategy's kind (other kinds' parameters are ignored)."""
    if r.kind is RestartStrategyKind.FIXED_DELAY:
        yield from _at_least(where, "attempts", r.attempts, 0)
        yield from _at_least(where, "delay_ms", r.delay_ms, 0)
    elif r.kind is RestartStrategyKind.FAILURE_RATE:
        yield from _at_least(where, "max_failures_per_interval", r.max_failures_per_interval, 1)
        yield from _at_least(where, "failure_rate_interval_ms", r.failure_rate_interval_ms, 1)
        yield from _at_least(where, "delay_ms", r.delay_ms, 0)
    elif r.kind is RestartStrategyKind.EXPONENTIAL_DELAY:
        yield from _at_least(where, "initial_backoff_ms", r.initial_backoff_ms, 1)
        if r.max_backoff_ms < r.initial_backoff_ms:
            yield (
                f"{where}.max_backoff_ms: must be >= initial_backoff_ms "
                f"({r.initial_backoff_ms}), got {r.max_backoff_ms}"
            )
        yield from _at_least(where, "backoff_multiplier", r.backoff_multiplier, 1.0)
        if not 0.0 <= r.jitter_factor <= 1.0:
            yield f"{where}.jitter_factor: must be between 0.0 and 1.0, got {r.jitter_factor}"
        yield from _at_least(where, "reset_backoff_threshold_ms", r.reset_backoff_threshold_ms, 1)
        yield from _at_least(
            where, "attempts_before_reset_backoff", r.attempts_before_reset_backoff, 0
        )


def check_checkpoint_config(c: CheckpointConfig, where: str = "checkpoint_config") -> Iterator[str]:
    if c.interval_ms != 0 and c.interval_ms < MIN_CHECKPOINT_INTERVAL_MS:
        yield (
            f"{where}.interval_ms: must be 0 (disabled) or >= {MIN_CHECKPOINT_INTERVAL_MS}, "
            f"got {c.interval_ms}"
        )
    yield from _at_least(where, "timeout_ms", c.timeout_ms, MIN_CHECKPOINT_TIMEOUT_MS)
    yield from _at_least(where, "min_pause_ms", c.min_pause_ms, 0)
    yield from _at_least(where, "max_concurrent", c.max_concurrent, 1)
    yield from _at_least(where, "tolerable_failures", c.tolerable_failures, 0)
    yield from _at_least(where, "retained", c.retained, 1)


#: Why a job that enables checkpointing is refused by a coordinator started with
#: checkpointing turned off (``--no-allow-checkpointing``).
CHECKPOINTING_UNSUPPORTED: Final = (
    "checkpoint_config.interval_ms: checkpointing is turned off on this coordinator "
    "(--no-allow-checkpointing); leave checkpoint_config out or set interval_ms: 0"
)


def validate_job_submitted(
    event: JobSubmitted,
    known_operators: Collection[str] | None = None,
    *,
    allow_checkpointing: bool = True,
    protected_topic_prefixes: Collection[str] = (),
) -> list[str]:
    """Every problem of a submission, with its location; [] if it is valid.

    `known_operators`: operators some worker offers; None skips that check
    (a client validating a file offline does not know them).
    `allow_checkpointing`: accept a job with checkpointing enabled (the
    default); off (a coordinator's ``--no-allow-checkpointing``), it is refused.
    `protected_topic_prefixes`: topics no operator config may name
    (``protected_prefixes``); empty checks none.
    """
    problems = input_problems(event)
    if problems:
        return problems
    if (p := _id_problem(event.job_id)) is not None:
        problems.append(f"job_id: {p}")
    if not event.name.strip():
        problems.append("name: must not be empty")
    problems.extend(check_job_graph(event.job_graph, known_operators))
    problems.extend(check_restart_strategy(event.restart_strategy))
    problems.extend(check_checkpoint_config(event.checkpoint_config))
    if event.checkpoint_config.interval_ms > 0 and not allow_checkpointing:
        problems.append(CHECKPOINTING_UNSUPPORTED)
    problems.extend(check_topics(event.job_graph, protected_topic_prefixes))
    return problems
