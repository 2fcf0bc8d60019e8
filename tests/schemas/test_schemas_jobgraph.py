"""Job files: shape and semantic validation, each problem with its location."""

import copy
from pathlib import Path
from typing import Any

import pytest

from schemas import events as ev
from schemas.jobgraph import JobGraphInvalid, load_job_file, parse_job_spec, to_job_submitted
from schemas.validation import find_cycle, validate_job_submitted

EXAMPLES = sorted(
    p
    for p in (Path(__file__).parents[2] / "docs" / "examples").glob("*.*")
    if p.suffix in (".yaml", ".yml", ".json")
)

BASE: dict[str, Any] = {
    "job_id": "job-1",
    "name": "Job",
    "vertices": [
        {"id": "a", "operator": "src", "parallelism": 2},
        {"id": "b", "operator": "map", "parallelism": 2, "max_parallelism": 8},
        {"id": "c", "operator": "sink", "parallelism": 4},
    ],
    "edges": [
        {"source": "a", "target": "b"},
        {"source": "b", "target": "c", "partitioning": "HASH", "key_field": "k"},
    ],
}


def build(doc: dict[str, Any]) -> ev.JobSubmitted:
    ids = iter(f"id-{i}" for i in range(100))
    return to_job_submitted(parse_job_spec(doc), event_time=7, new_id=lambda: next(ids))


def problems_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(JobGraphInvalid) as info:
        build(doc)
    return info.value.problems


def with_(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    if isinstance(node, list) and int(last) == len(node):
        node.append(value)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    event = load_job_file(path, event_time=1)
    assert validate_job_submitted(event) == []


def test_valid_spec_builds_the_event() -> None:
    event = build(BASE)
    assert event.job_id == "job-1" and event.event_id == "id-0" and event.event_time == 7
    assert event.job_graph.edges[1].partitioning is ev.Partitioning.HASH
    assert event.job_graph.vertices[0].name == "a"  # name defaults to the id
    assert event.restart_strategy == ev.RestartStrategy()
    assert event.checkpoint_config == ev.CheckpointConfig()


def test_job_id_is_generated_when_absent() -> None:
    doc = copy.deepcopy(BASE)
    del doc["job_id"]
    event = build(doc)
    assert event.job_id == "id-1"


SEMANTIC_CASES = [
    (
        with_("vertices.1.parallelism", 9),
        "vertices[1].parallelism: must be between 1 and max_parallelism (8), got 9",
    ),
    (
        with_("vertices.0.parallelism", 0),
        "vertices[0].parallelism: must be between 1 and max_parallelism (128), got 0",
    ),
    (with_("vertices.2.id", "a"), "vertices[2].id: duplicate vertex id 'a' (also vertices[0])"),
    (with_("vertices.2.id", "has space"), "vertices[2].id: must match"),
    (with_("vertices.0.max_parallelism", 40000), "vertices[0].max_parallelism: must be between 1"),
    (with_("edges.0.target", "zz"), "edges[0].target: unknown vertex 'zz'"),
    (with_("edges.1.key_field", None), "edges[1].key_field: required for HASH partitioning"),
    (with_("edges.0.key_field", "k"), "edges[0].key_field: only allowed with HASH"),
    (
        with_("edges.1.partitioning", "FORWARD"),
        "edges[1].partitioning: FORWARD needs equal parallelism (b: 2, c: 4)",
    ),
    (
        with_("edges.2", {"source": "c", "target": "a", "partitioning": "REBALANCE"}),
        "edges: cycle a -> b -> c -> a",
    ),
    (
        with_("edges.2", {"source": "a", "target": "b"}),
        "edges[2]: duplicate edge a -> b (also edges[0])",
    ),
    (with_("vertices", []), "vertices: must contain at least one vertex"),
    (with_("name", " "), "name: must not be empty"),
    (with_("job_id", "a/b"), "job_id: must match"),
    (with_("job_id", "job-1\n"), "job_id: must match"),  # no newline past the end
    (with_("vertices.2.id", "c\n"), "vertices[2].id: must match"),
    (
        with_("restart_strategy", {"kind": "fixed_delay", "attempts": -1}),
        "restart_strategy.attempts: must be >= 0, got -1",
    ),
    (
        with_("restart_strategy", {"kind": "FAILURE_RATE", "failure_rate_interval_ms": 0}),
        "restart_strategy.failure_rate_interval_ms: must be >= 1, got 0",
    ),
    (
        with_("restart_strategy", {"initial_backoff_ms": 5000, "max_backoff_ms": 1000}),
        "restart_strategy.max_backoff_ms: must be >= initial_backoff_ms (5000), got 1000",
    ),
    (
        with_("restart_strategy", {"jitter_factor": 1.5}),
        "restart_strategy.jitter_factor: must be between 0.0 and 1.0, got 1.5",
    ),
    (
        with_("restart_strategy", {"backoff_multiplier": 0.5}),
        "restart_strategy.backoff_multiplier: must be >= 1.0, got 0.5",
    ),
    (
        with_("checkpoint_config", {"interval_ms": 5}),
        "checkpoint_config.interval_ms: must be 0 (disabled) or >= 10, got 5",
    ),
    (
        with_("checkpoint_config", {"max_concurrent": 0}),
        "checkpoint_config.max_concurrent: must be >= 1, got 0",
    ),
    (
        with_("checkpoint_config", {"retained": 0}),
        "checkpoint_config.retained: must be >= 1, got 0",
    ),
    (
        with_("checkpoint_config", {"timeout_ms": 0}),
        "checkpoint_config.timeout_ms: must be >= 10, got 0",
    ),
]


@pytest.mark.parametrize(("doc", "expected"), SEMANTIC_CASES, ids=[c[1] for c in SEMANTIC_CASES])
def test_semantic_problem_is_reported_with_location(doc: dict[str, Any], expected: str) -> None:
    problems = problems_of(doc)
    assert any(p.startswith(expected) for p in problems), problems


SHAPE_CASES = [
    (with_("vertices.0.parallelism", "two"), "vertices[0].parallelism: Input should be a valid"),
    (with_("edges.0.partitioning", "SHUFFLE"), "edges[0].partitioning: Input should be"),
    (with_("vertices.1.colour", "red"), "vertices[1].colour: Extra inputs are not permitted"),
    (with_("restart_strategy", {"kind": "SOMETIMES"}), "restart_strategy.kind: Input should be"),
    ({"name": "x"}, "vertices: Field required"),
]


@pytest.mark.parametrize(("doc", "expected"), SHAPE_CASES, ids=[c[1] for c in SHAPE_CASES])
def test_shape_problem_is_reported_with_location(doc: dict[str, Any], expected: str) -> None:
    assert any(p.startswith(expected) for p in problems_of(doc)), problems_of(doc)


def test_every_problem_is_collected_in_one_error() -> None:
    doc = with_("vertices.1.parallelism", 9)
    doc["edges"][0]["target"] = "zz"
    doc["checkpoint_config"] = {"retained": 0}
    with pytest.raises(JobGraphInvalid) as info:
        build(doc)
    assert len(info.value.problems) == 3
    assert "3 problem(s)" in str(info.value)


def test_config_scalars_become_strings() -> None:
    event = build(with_("vertices.0.config", {"port": 9092, "tls": True, "name": "x"}))
    assert event.job_graph.vertices[0].config == {"port": "9092", "tls": "true", "name": "x"}


def test_known_operators_are_checked_by_the_coordinator() -> None:
    event = build(BASE)
    assert validate_job_submitted(event, {"src", "map"}) == [
        "vertices[2].operator: no worker offers operator 'sink'"
    ]


def test_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(JobGraphInvalid, match="not valid YAML"):
        load_job_file(path, event_time=1)


@pytest.mark.parametrize(
    ("name", "text", "where", "what"),
    [
        ("bad.yaml", "name: job\nvertices: [\n  {id: a\n  b: 2", ":4:4: ", "not valid YAML"),
        ("colon.yaml", "name: a: b\n", ":1:8: ", "mapping values are not allowed here"),
        ("bad.json", '{"name": "job",\n "vertices": [,]}', ":2:15: ", "not valid JSON"),
    ],
)
def test_syntax_errors_name_file_line_and_column(
    tmp_path: Path, name: str, text: str, where: str, what: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(JobGraphInvalid) as info:
        load_job_file(path, event_time=1)
    [problem] = info.value.problems
    assert problem.startswith(f"{path}{where}"), problem
    assert what in problem and "<unicode string>" not in problem


def test_a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: job\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(JobGraphInvalid) as info:
        load_job_file(path, event_time=1)
    assert info.value.problems == [
        f"{path}:2:6: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    ]


def test_nested_and_null_config_values_are_refused_at_their_key() -> None:
    doc = with_("vertices.1.config", {"n": 3, "x": {"nested": 1}, "ys": [1, 2], "z": None})
    assert problems_of(doc) == [
        "vertices[1].config.x: nested values are not supported (operator config is a flat "
        "map of strings): use one key per value, or quote the value to pass it as text",
        "vertices[1].config.ys: nested values are not supported (operator config is a flat "
        "map of strings): use one key per value, or quote the value to pass it as text",
        "vertices[1].config.z: null is not a value: leave the key out, or quote 'null' to "
        "mean the text",
    ]


def test_scalar_config_values_become_the_strings_yaml_wrote(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: j\nvertices:\n  - id: a\n    operator: sequence\n"
        "    config: {count: 10, enabled: true, rate: 2.5, text: '{nested: 1}', nothing: 'null'}\n"
    )
    [vertex] = load_job_file(path, event_time=1).job_graph.vertices
    assert vertex.config == {
        "count": "10", "enabled": "true", "rate": "2.5", "text": "{nested: 1}", "nothing": "null",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ([], []),
        ([("a", "a")], ["a", "a"]),
        ([("a", "b"), ("b", "c")], []),
        ([("a", "b"), ("b", "c"), ("c", "b")], ["b", "c", "b"]),
        ([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], []),
    ],
)
def test_find_cycle(edges: list[tuple[str, str]], cycle: list[str]) -> None:
    graph = ev.JobGraph(
        vertices=tuple(ev.Vertex(id=v, name=v, operator="op") for v in "abcd"),
        edges=tuple(ev.Edge(source=s, target=t) for s, t in edges),
    )
    assert find_cycle(graph) == cycle
