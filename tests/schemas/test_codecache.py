"""Generated source compiled once: the code object cache (schemas/codecache.py)."""

import marshal
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
