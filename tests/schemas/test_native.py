"""The readers compiled with mypyc (schemas.native) read what the Python-run readers read.

The codec's other tests (fastavro against the generated readers) go through whichever
reader the codec uses: the compiled one where it is built, as `make test` does.
"""

import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import codec, convert, native
from schemas.events import EVENT_CLASSES, Event
from tests.schemas.event_strategies import events_of, same_types

LATEST = codec.latest_versions(codec.default_codec().versions)


def _compiled_or_skip(cls: type[Event]) -> convert.BodyReader:
    generated = convert.reader_source(cls, LATEST[cls].parsed)
    assert generated is not None
    reader = native.reader(generated)
    if reader is None:
        if os.environ.get("CI"):
            pytest.fail(f"no compiled reader for {cls.__name__} in CI (`make install` builds them)")
        pytest.skip("the compiled readers are not built here (python -m schemas.native build)")
    return reader


def _outcome(reader: convert.BodyReader, value: bytes) -> tuple[Any, ...]:
    try:
        event, end = reader(value, codec.HEADER_LEN, len(value))
    except Exception as e:  # the codec turns any of these into CorruptRecordError
        return ("raised", type(e))
    return ("read", event, end)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """The same outcome; events compared field by field, types included (a changed byte
    can make a NaN double)."""
    return len(a) == len(b) and a[0] == b[0] and all(map(same_types, a[1:], b[1:]))


def test_every_class_is_compiled_in_ci() -> None:
    if not os.environ.get("CI"):
        pytest.skip("checked in CI, where `make install` runs with --require")
    s = native.status()
    assert s["loaded"], s
    assert s["as_python"] == [], s
    assert len(s["compiled"]) == len(
        [c for c in EVENT_CLASSES if convert.reader_source(c, LATEST[c].parsed) is not None]
    )
    # Built from this tree's source already: the README's `build` finds it up to date.
    out = subprocess.run([sys.executable, "-m", "schemas.native", "build", "--require"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.startswith("schemas.native: up to date: ") and s["file"] in out


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_compiled_reader_reads_what_the_python_reader_reads(
    cls: type[Event], data: st.DataObject
) -> None:
    compiled = _compiled_or_skip(cls)
    python = convert.body_reader(cls, LATEST[cls].parsed, compiled=False)
    assert python is not None and python is not compiled
    event = data.draw(events_of(cls))
    value = bytearray(codec.encode(event)[0])
    read = _outcome(compiled, bytes(value))
    assert read == _outcome(python, bytes(value)) == ("read", event, len(value))
    # A changed byte or a cut value: both read the same thing or both refuse it.
    if len(value) > codec.HEADER_LEN:
        at = data.draw(st.integers(codec.HEADER_LEN, len(value) - 1))
        value[at] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(codec.HEADER_LEN, len(value)))
        for probe in (bytes(value), bytes(value[:cut])):
            assert _same(_outcome(compiled, probe), _outcome(python, probe))


def test_a_source_that_changed_is_not_served_compiled() -> None:
    cls = EVENT_CLASSES[0]
    _compiled_or_skip(cls)
    generated = convert.reader_source(cls, LATEST[cls].parsed)
    assert generated is not None
    changed = generated._replace(source=generated.source + "\n# another generator\n")
    assert native.reader(changed) is None


def test_the_switch_turns_them_off() -> None:
    _compiled_or_skip(EVENT_CLASSES[0])
    out = subprocess.run(
        [sys.executable, "-m", "schemas.native", "status"],
        env={**os.environ, native.ENV: "off"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "not loaded (JM_NATIVE_CODEC=off)" in out
    assert f"as Python: {len(native.status()['compiled'])}" in out


def test_annotate_types_the_arguments_and_the_locals_of_several_types() -> None:
    source = "def X__read_X(d, p, n):\n    o = new(X__C_X)\n    v2, p = f(d, p, n)\n    x10 = 1\n"
    assert native.annotate(source) == (
        "def X__read_X(d: bytes, p: int, n: int) -> tuple[Any, int]:\n"
        "    v2: Any\n    x10: Any\n"
        "    o = new(X__C_X)\n    v2, p = f(d, p, n)\n    x10 = 1\n"
    )
