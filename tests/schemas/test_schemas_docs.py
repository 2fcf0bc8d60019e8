"""docs/wire-format.md's producer snippet (fastavro only) makes records the codec accepts."""

import re
from pathlib import Path
from typing import Any

from schemas import codec
from schemas.avrogen import AVRO_DIR
from schemas.catalog import Catalog
from schemas.events import JobSubmitted
from schemas.validation import validate_job_submitted

DOC = Path(__file__).parents[2] / "docs" / "wire-format.md"


def test_wire_format_snippet_produces_a_valid_job_submitted() -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOC), "exec"), namespace)
    latest = max((AVRO_DIR / "JobSubmitted").glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
    key, value, headers = namespace["job_submitted_record"](str(latest), "doc-job")
    event = codec.decode(value, Catalog().submissions.allowed)
    assert isinstance(event, JobSubmitted)
    assert key == b"doc-job" and event.job_id == "doc-job"
    assert validate_job_submitted(event) == []
    assert headers == codec.encode(event)[1]
