"""schemas.limits: every input field has a limit, the helpers keep text bounded,
and docs/wire-format.md lists every limit with its value."""

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import limits
from schemas.catalog import Catalog
from schemas.limits import (
    MAX_ERROR_MESSAGE_BYTES,
    MAX_ERROR_STACK_BYTES,
    MAX_REJECTION_REASON_BYTES,
    bounded_reason,
    clip,
    clip_id,
    clip_trace,
    input_problems,
    utf8_len,
)
from tests.schemas.event_strategies import events_of

DOC = Path(__file__).parents[2] / "docs" / "wire-format.md"
_CATALOG = Catalog()
INPUT_CLASSES = sorted(
    _CATALOG.submissions.allowed | _CATALOG.reports.allowed | _CATALOG.heartbeats.allowed,
    key=lambda c: c.__name__,
)


def test_the_doc_lists_every_limit_with_its_value() -> None:
    text = DOC.read_text()
    for name, value in limits.limits().items():
        row = re.search(rf"^\| `{name}` \| ([0-9,_ ]+) \|", text, re.MULTILINE)
        assert row is not None, f"docs/wire-format.md has no row for {name}"
        assert int(re.sub(r"[,_ ]", "", row.group(1))) == value, name


@given(st.one_of([events_of(c) for c in INPUT_CLASSES]))
def test_every_field_of_every_input_event_has_a_limit(event: object) -> None:
    # A string field without a limit raises KeyError: a new field cannot slip through.
    assert isinstance(input_problems(event), list)  # type: ignore[arg-type]


@given(st.text(max_size=400), st.integers(min_value=32, max_value=300))
def test_clip_fits_and_keeps_short_text(text: str, max_bytes: int) -> None:
    out = clip(text, max_bytes)
    if utf8_len(text) <= max_bytes:
        assert out == text
    else:
        assert utf8_len(out) <= max_bytes and "…" in out


@given(st.text(max_size=400))
def test_clip_id_fits_and_tells_ids_apart(text: str) -> None:
    out = clip_id(text, 40)
    assert utf8_len(out) <= 40
    if utf8_len(text) > 40:
        assert clip_id(text + "x", 40) != out


def test_clip_trace_keeps_the_exception_message_whole() -> None:
    message = "ValueError: " + "m" * (MAX_ERROR_MESSAGE_BYTES - 20)
    trace = "Traceback (most recent call last):\n" + '  File "x.py"\n' * 50_000 + message
    out = clip_trace(trace)
    assert utf8_len(out) <= MAX_ERROR_STACK_BYTES
    assert out.endswith(message) and out.startswith("Traceback")
    assert "cut" in out
    assert clip_trace("short") == "short"


def test_bounded_reason_counts_what_it_does_not_list() -> None:
    reason = bounded_reason([f"vertices[{i}].id: bad {'x' * 500}" for i in range(1000)])
    assert utf8_len(reason) <= MAX_REJECTION_REASON_BYTES
    assert reason.startswith("vertices[0].id")


def _job_file(tmp_path: Path, vertices: int, parallelism: int, id_len: int = 30) -> Path:
    rows = [
        f"  - {{id: {'v' * (id_len - 3)}{i:03d}, operator: map, parallelism: {parallelism}, "
        f"max_parallelism: {max(parallelism, 128)}}}"
        for i in range(vertices)
    ]
    path = tmp_path / "job.yaml"
    path.write_text("name: big\nvertices:\n" + "\n".join(rows) + "\n")
    return path


def test_dry_run_refuses_a_job_over_the_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from coordinator.cli import main

    assert main(["submit", str(_job_file(tmp_path, 10, 4096)), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "40960 subtasks" in err and f"at most {limits.MAX_SUBTASKS_PER_JOB}" in err
    assert main(["submit", str(_job_file(tmp_path, 2, 512)), "--dry-run"]) == 0
    assert main(["submit", str(_job_file(tmp_path, 1, 1)), "--dry-run", "--job-id", "j" * 101]) == 1
    assert "job_id: 101 bytes, at most 100 allowed" in capsys.readouterr().err
