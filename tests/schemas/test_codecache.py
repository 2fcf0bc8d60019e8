"""Generated source compiled once: the code object cache (schemas/codecache.py)."""

import dataclasses
import marshal
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest

from schemas import codecache

SOURCE = "def double(x):\n    return 2 * x\n"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("JM_CODE_CACHE", raising=False)
    return tmp_path / "code"


def _double(source: str = SOURCE) -> Any:
    namespace: dict[str, Any] = {}
    codecache.run(source, namespace)
    return namespace["double"]


def test_a_source_is_compiled_once_and_then_read_from_the_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _double()(21) == 42
    (kept,) = cache.glob("*.code")
    assert marshal.loads(kept.read_bytes()).co_filename == "<string>"

    def no_compile(*args: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(codecache, "compile", no_compile, raising=False)
    assert _double()(4) == 8  # from the file
    with pytest.raises(AssertionError, match="compiled again"):
        _double(SOURCE + "\n# another source\n")


def test_an_unreadable_cache_file_is_compiled_again_and_replaced(cache: Path) -> None:
    _double()
    (kept,) = cache.glob("*.code")
    kept.write_bytes(b"\x00 not marshal")
    assert _double()(5) == 10
    assert marshal.loads(kept.read_bytes()).co_name == "<module>"
    assert [p.name for p in cache.iterdir()] == [kept.name]  # no partial file left


def test_the_cache_can_be_turned_off_or_be_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("JM_CODE_CACHE", "off")
    assert codecache.directory() is None
    assert _double()(1) == 2
    assert list(tmp_path.iterdir()) == []
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("JM_CACHE_DIR", str(blocked))
    monkeypatch.delenv("JM_CODE_CACHE")
    assert _double()(3) == 6  # compiled, not kept


def _define() -> type:
    """A frozen, slotted dataclass defined under the bundle of this test module."""
    end = codecache.dataclass_functions("test-module")
    try:

        @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
        class Point:
            x: int
            y: int = 0

    finally:
        end()
    return Point


def test_dataclass_functions_are_compiled_once_then_read_from_one_bundle(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _define()
    (bundle,) = cache.glob("dataclasses-test-module-*.code")
    kept = marshal.loads(bundle.read_bytes())
    assert kept and all(isinstance(code, types.CodeType) for code in kept.values())
    assert not hasattr(dataclasses, "exec")  # the builtin again

    def no_compile(*args: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(codecache, "compile", no_compile, raising=False)
    second = _define()  # every generated function from the bundle
    a, b = second(x=1, y=2), second(x=1, y=2)
    assert a == b and hash(a) == hash(b) and repr(a).endswith(".Point(x=1, y=2)")
    assert second(x=3) != a and second(x=3).y == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.x = 5
    assert repr(first(x=1, y=2)) == repr(a)


def test_a_bundle_that_does_not_load_is_compiled_again_and_replaced(cache: Path) -> None:
    _define()
    (bundle,) = cache.glob("dataclasses-test-module-*.code")
    bundle.write_bytes(b"\x00 not marshal")
    assert _define()(x=4).x == 4
    assert isinstance(marshal.loads(bundle.read_bytes()), dict)
    assert [p.name for p in cache.iterdir()] == [bundle.name]  # no partial file left


def test_with_the_cache_off_dataclasses_keep_the_builtin_exec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("JM_CODE_CACHE", "off")
    end = codecache.dataclass_functions("test-module")
    assert not hasattr(dataclasses, "exec")
    end()
    assert _define()(x=1).x == 1
    assert list(tmp_path.iterdir()) == []


def test_the_events_module_defines_the_same_classes_from_the_bundle() -> None:
    # A fresh interpreter imports schemas.events twice over (cache cold, then warm):
    # the classes compare, hash and print the same either way.
    code = (
        "import schemas.events as ev; r = ev.TaskRef(job_id='j', vertex_id='v', "
        "subtask_index=1, attempt=0); print(repr(r), hash(r) == hash(ev.TaskRef(job_id='j', "
        "vertex_id='v', subtask_index=1, attempt=0)))"
    )
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "JM_CACHE_DIR": home, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("JM_CODE_CACHE", None)
        run = [sys.executable, "-c", code]
        runs = [
            subprocess.run(run, env=env, check=True, capture_output=True, text=True).stdout
            for _ in range(2)
        ]
        assert list(Path(home, "code").glob("dataclasses-schemas.events-*.code"))
    assert (
        runs[0]
        == runs[1]
        == ("TaskRef(job_id='j', vertex_id='v', subtask_index=1, attempt=0) True\n")
    )
