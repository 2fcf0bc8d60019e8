"""Job files (YAML or JSON) -> validated ``JobSubmitted`` events.

Two passes, both collecting every problem with its location:

1. shape (pydantic): types, unknown keys, enum names. Nothing else can be
   checked on a malformed document, so shape problems are reported alone.
2. semantics (schemas.validation, pure): unique ids, edges, cycles,
   parallelism, partitioning, restart and checkpoint ranges. The coordinator
   runs the same pass on every JobSubmitted it reads.

A job file looks like docs/examples/*.yaml; keys match the event's fields.
"""

import json
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from schemas import events as ev
from schemas.errors import SchemaError
from schemas.validation import validate_job_submitted

__all__ = [
    "JobGraphInvalid",
    "JobSpec",
    "load_job_file",
    "parse_job_spec",
    "to_job_submitted",
    "validate_job_submitted",
]


class JobGraphInvalid(SchemaError, ValueError):
    """A job spec has problems; `problems` lists each with its location."""

    def __init__(self, problems: list[str], source: str = "job") -> None:
        self.problems = problems
        self.source = source
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{listing}")


def _upper(value: object) -> object:
    # Enum names are case-insensitive in job files: "hash" and "HASH" both work.
    return value.upper() if isinstance(value, str) else value


class ConfigValueProblems(ValueError):
    """Config values a job file cannot mean: each (key, problem), reported at its key."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {problem}" for key, problem in problems))


_NESTED = (
    "nested values are not supported (operator config is a flat map of strings): "
    "use one key per value, or quote the value to pass it as text"
)
_NULL = "null is not a value: leave the key out, or quote 'null' to mean the text"


def _config_values(value: object) -> object:
    # YAML turns `parallelism: 4` or `enabled: true` into int/bool; operator
    # config is a string map, so scalars are stringified the way YAML wrote them.
    # A mapping, list or null has no faithful string form: refused at its key.
    if not isinstance(value, dict):
        return value
    problems = [
        (str(k), _NESTED if isinstance(v, dict | list | tuple | set) else _NULL)
        for k, v in value.items()
        if v is None or isinstance(v, dict | list | tuple | set)
    ]
    if problems:
        raise ConfigValueProblems(problems)
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}


_STRICT = ConfigDict(extra="forbid", frozen=True)


class VertexSpec(BaseModel):
    model_config = _STRICT
    id: str
    name: str | None = None
    operator: str
    parallelism: int = 1
    max_parallelism: int = 128
    config: dict[str, str] = Field(default_factory=dict)
    chaining: bool = True
    slot_sharing_group: str = "default"

    @field_validator("config", mode="before")
    @classmethod
    def _stringify_config(cls, value: object) -> object:
        return _config_values(value)


class EdgeSpec(BaseModel):
    model_config = _STRICT
    source: str
    target: str
    partitioning: ev.Partitioning = ev.Partitioning.FORWARD
    key_field: str | None = None

    @field_validator("partitioning", mode="before")
    @classmethod
    def _partitioning_upper(cls, value: object) -> object:
        return _upper(value)


class RestartStrategySpec(BaseModel):
    model_config = _STRICT
    kind: ev.RestartStrategyKind = ev.RestartStrategyKind.EXPONENTIAL_DELAY
    attempts: int = 1
    delay_ms: int = 1_000
    max_failures_per_interval: int = 1
    failure_rate_interval_ms: int = 60_000
    initial_backoff_ms: int = 1_000
    max_backoff_ms: int = 60_000
    backoff_multiplier: float = 1.5
    jitter_factor: float = 0.1
    reset_backoff_threshold_ms: int = 3_600_000
    attempts_before_reset_backoff: int = 2_147_483_647

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_upper(cls, value: object) -> object:
        return _upper(value)


class CheckpointConfigSpec(BaseModel):
    model_config = _STRICT
    interval_ms: int = 0
    timeout_ms: int = 600_000
    min_pause_ms: int = 0
    max_concurrent: int = 1
    tolerable_failures: int = 0
    retained: int = 1
    externalized_retention: ev.ExternalizedRetention = (
        ev.ExternalizedRetention.RETAIN_ON_CANCELLATION
    )

    @field_validator("externalized_retention", mode="before")
    @classmethod
    def _retention_upper(cls, value: object) -> object:
        return _upper(value)


class ArtifactSpec(BaseModel):
    """A stored user-code package, as ``POST /artifacts`` answers it (docs/user-code.md)."""

    model_config = _STRICT
    sha256: str
    size: int
    name: str
    version: str
    filename: str
    handle: str
    operators: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    signature: str | None = None


class JobSpec(BaseModel):
    """The shape of a job file."""

    model_config = _STRICT
    job_id: str | None = None
    name: str
    vertices: list[VertexSpec]
    edges: list[EdgeSpec] = Field(default_factory=list)
    chaining: bool = True
    restart_strategy: RestartStrategySpec = Field(default_factory=RestartStrategySpec)
    checkpoint_config: CheckpointConfigSpec = Field(default_factory=CheckpointConfigSpec)
    savepoint_path: str | None = None
    submitted_by: str | None = None
    #: the job's own code (docs/user-code.md): a project directory, wheel or sdist,
    #: relative to the job file; ``jm submit`` uploads it (like ``--code``).
    code: str | None = None
    #: an already stored package (the answer of ``POST /artifacts``)
    artifact: ArtifactSpec | None = None


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _problems(err: ErrorDetails) -> list[str]:
    where = _location(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, ConfigValueProblems):
        return [f"{where}.{key}: {problem}" for key, problem in cause.problems]
    return [f"{where}: {err['msg']}"]


def parse_job_spec(data: object, source: str = "job") -> JobSpec:
    """The shape pass; raises JobGraphInvalid listing every shape problem."""
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        problems = [p for err in e.errors() for p in _problems(err)]
        raise JobGraphInvalid(problems, source) from None


def to_job_submitted(
    spec: JobSpec,
    *,
    event_time: int,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    known_operators: Collection[str] | None = None,
    source: str = "job",
    default_checkpoint_interval_ms: int = 0,
) -> ev.JobSubmitted:
    """A JobSubmitted for a spec, after the semantic pass (JobGraphInvalid if any problem).

    Time and ids are inputs: `event_time` in ms, `new_id()` gives the event id
    and, when the spec names none, the job id. `default_checkpoint_interval_ms`: the
    cluster's ``execution.checkpointing.interval``, the interval of a spec whose
    checkpoint_config does not set ``interval_ms`` (one that sets it, 0 included, keeps it).
    """
    checkpoint = spec.checkpoint_config.model_dump()
    if "interval_ms" not in spec.checkpoint_config.model_fields_set:
        checkpoint["interval_ms"] = default_checkpoint_interval_ms
    graph = ev.JobGraph(
        vertices=tuple(
            ev.Vertex(
                id=v.id,
                name=v.name if v.name is not None else v.id,
                operator=v.operator,
                parallelism=v.parallelism,
                max_parallelism=v.max_parallelism,
                config=dict(v.config),
                chaining=v.chaining,
                slot_sharing_group=v.slot_sharing_group,
            )
            for v in spec.vertices
        ),
        chaining=spec.chaining,
        edges=tuple(
            ev.Edge(
                source=e.source, target=e.target, partitioning=e.partitioning, key_field=e.key_field
            )
            for e in spec.edges
        ),
    )
    event = ev.JobSubmitted(
        event_id=new_id(),
        event_time=event_time,
        job_id=spec.job_id if spec.job_id is not None else new_id(),
        name=spec.name,
        job_graph=graph,
        restart_strategy=ev.RestartStrategy(**spec.restart_strategy.model_dump()),
        checkpoint_config=ev.CheckpointConfig(**checkpoint),
        savepoint_path=spec.savepoint_path,
        submitted_by=spec.submitted_by,
        artifact=None if spec.artifact is None else ev.ArtifactRef(**spec.artifact.model_dump()),
    )
    problems = validate_job_submitted(event, known_operators)
    if problems:
        raise JobGraphInvalid(problems, source)
    return event


def job_file_code(path: str | Path) -> Path | None:
    """The ``code:`` of a job file, resolved against the file's directory (None: none)."""
    p = Path(path)
    code = parse_job_spec(load_document(p), str(p)).code
    return None if code is None else (p.parent / code).resolve()


def load_document(path: Path) -> Any:
    """A YAML or JSON document (JSON is YAML, but its errors read better from json).

    Problems name the file and, where there is one, the line and column
    (1-based): ``job.yaml:3:7: ...``."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise JobGraphInvalid(
            [f"{path}:{line}:{col}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
             "save the file as UTF-8"], str(path),
        ) from None  # fmt: skip
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise JobGraphInvalid(
                [f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}"], str(path)
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = "; ".join(part for part in (e.context, e.problem) if part)
        raise JobGraphInvalid([f"{where}: not valid YAML: {what}"], str(path)) from None
    except yaml.YAMLError as e:
        raise JobGraphInvalid([f"{path}: not valid YAML: {e}"], str(path)) from None


def load_job_file(
    path: str | Path,
    *,
    event_time: int,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    known_operators: Collection[str] | None = None,
    default_checkpoint_interval_ms: int = 0,
) -> ev.JobSubmitted:
    """Load, validate and turn a job file into a JobSubmitted (JobGraphInvalid otherwise);
    `default_checkpoint_interval_ms` as `to_job_submitted` takes it."""
    p = Path(path)
    spec = parse_job_spec(load_document(p), str(p))
    return to_job_submitted(
        spec, event_time=event_time, new_id=new_id, known_operators=known_operators,
        source=str(p), default_checkpoint_interval_ms=default_checkpoint_interval_ms,
    )  # fmt: skip
