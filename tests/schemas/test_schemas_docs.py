"""docs/wire-format.md's snippets (fastavro only) make and read records the codec agrees
with, and its topic table says what the catalog configures. (Against a real broker and
coordinator: tests/integration/test_wire_format_doc.py.)"""

import re
from pathlib import Path
from typing import Any

from schemas import codec
from schemas import events as ev
from schemas.avrogen import AVRO_DIR
from schemas.catalog import Catalog
from schemas.events import JobSubmitted
from schemas.validation import validate_job_submitted

DOC = Path(__file__).parents[2] / "docs" / "wire-format.md"


def doc_snippet(defines: str) -> dict[str, Any]:
    """The namespace of the doc's python snippet that defines `defines`."""
    (snippet,) = [
        s
        for s in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
        if f"def {defines}(" in s
    ]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOC), "exec"), namespace)
    return namespace


def latest_avsc(event_type: str) -> Path:
    return max((AVRO_DIR / event_type).glob("v*.avsc"), key=lambda p: int(p.stem[1:]))


def test_wire_format_snippet_produces_a_valid_job_submitted() -> None:
    make = doc_snippet("job_submitted_record")["job_submitted_record"]
    key, value, headers = make(str(latest_avsc("JobSubmitted")), "doc-job")
    event = codec.decode(value, Catalog().submissions.allowed)
    assert isinstance(event, JobSubmitted)
    assert key == b"doc-job" and event.job_id == "doc-job"
    assert validate_job_submitted(event) == []
    assert headers == codec.encode(event)[1]
    # Left out, so fastavro wrote the schema's defaults (as the doc says).
    assert event.restart_strategy == ev.RestartStrategy(
        kind=ev.RestartStrategyKind.FIXED_DELAY, attempts=3, delay_ms=1000
    )
    assert event.checkpoint_config == ev.CheckpointConfig()
    assert event.job_graph.vertices[1].parallelism == 1
    assert event.job_graph.vertices[1].max_parallelism == 128


def test_wire_format_reader_snippet_decodes_every_published_version() -> None:
    namespace = doc_snippet("decode_value")
    readers = namespace["load_readers"](str(AVRO_DIR))
    assert len(readers) == len(codec.load_versions())
    status = ev.ReplicaStatus(
        event_id="s", event_time=1, replica_id="c1", role=ev.ReplicaRole.LEADER, epoch=2,
        applied_offset=5, lag=0, digest="d", unknown_heartbeats=4,
    )  # fmt: skip
    value, _ = codec.encode(status)
    name, fields = namespace["decode_value"](readers, value)
    assert name == "ReplicaStatus"
    assert fields["role"] == "LEADER" and fields["unknown_heartbeats"] == 4


def test_wire_format_topic_table_gives_each_topics_key_and_max_record() -> None:
    text = DOC.read_text()
    for spec in Catalog().topics:
        row = re.search(rf"^\| `{re.escape(spec.name)}` \|.*\(([\d,]+) bytes\) \|$", text, re.M)
        assert row is not None, f"no row for {spec.name} with its max record size"
        assert int(row.group(1).replace(",", "")) == spec.max_message_bytes, spec.name
