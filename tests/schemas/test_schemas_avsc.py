"""The .avsc files are the contract: complete, documented, in step with the classes,
and FULL compatible across versions."""

import json
from pathlib import Path

import pytest

from schemas import avrogen, compat
from schemas.events import EVENT_CLASSES

FIXTURES = Path(__file__).parents[1] / "fixtures" / "schemas"


def test_every_class_has_a_schema_matching_its_latest_avsc() -> None:
    assert avrogen.main(["--check"]) == 0


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_every_field_is_documented(cls: type) -> None:
    def walk(schema: object) -> None:
        if isinstance(schema, dict):
            if schema.get("type") in ("record", "enum"):
                assert schema.get("doc"), schema["name"]
            for f in schema.get("fields", []):
                assert f.get("doc"), f"{cls.__name__}.{f['name']}"
                walk(f["type"])
            for key in ("items", "values"):
                walk(schema.get(key))
        elif isinstance(schema, list):
            for branch in schema:
                walk(branch)

    for _, path in avrogen.versions(cls.__name__):
        walk(json.loads(path.read_text()))


def test_a_second_version_is_published() -> None:
    assert [v for v, _ in avrogen.versions("TaskManagerRegistered")] == [1, 2]


def test_published_versions_are_full_compatible() -> None:
    assert compat.check_tree() == []
    assert compat.main([]) == 0


def test_incompatible_fixture_is_rejected() -> None:
    root = FIXTURES / "incompatible"
    problems = compat.check_tree(root)
    assert problems, "the deliberately incompatible v2 must fail the check"
    assert any("rack" in " ".join(p.messages) for p in problems)
    assert compat.main([str(root)]) == 1
    files = [str(p) for p in compat.published(root)["TaskManagerRegistered"]]
    assert compat.main(files) == 1


def test_check_is_full_in_both_directions(tmp_path: Path) -> None:
    # Removing a field that has no default breaks forward compatibility only:
    # the old reader cannot fill it from a new record.
    v1 = json.loads((avrogen.AVRO_DIR / "TaskManagerDeregistered" / "v1.avsc").read_text())
    v2 = dict(v1, fields=[f for f in v1["fields"] if f["name"] != "incarnation"])
    (tmp_path / "v1.avsc").write_text(json.dumps(v1))
    (tmp_path / "v2.avsc").write_text(json.dumps(v2))
    problems = compat.check_full([tmp_path / "v1.avsc", tmp_path / "v2.avsc"])
    assert [(Path(p.reader).name, Path(p.writer).name) for p in problems] == [
        ("v1.avsc", "v2.avsc")
    ]
