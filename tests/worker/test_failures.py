"""Bounded failure descriptions, without processes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.failures import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_BYTES,
    MAX_STACK_BYTES,
    clip_middle,
    describe,
)


class UserError(Exception):
    """An exception of user code."""


def _raise(message: str, depth: int) -> None:
    if depth:
        _raise_again(message, depth - 1)  # alternating frames: Python folds no repeats
    raise UserError(message)


def _raise_again(message: str, depth: int) -> None:
    _raise(message, depth)


def _caught(message: str, depth: int = 0) -> BaseException:
    try:
        _raise(message, depth)
    except UserError as error:
        return error
    raise AssertionError("no exception")


def test_a_small_failure_is_reported_whole() -> None:
    name, stack = describe(_caught("bad record 42", depth=3))
    assert name == "UserError"
    assert stack.startswith("Traceback (most recent call last):")
    assert stack.endswith("UserError: bad record 42\n")
    assert "[..." not in stack


def test_a_deep_trace_keeps_its_ends_and_the_whole_message() -> None:
    message = "m" * (MAX_MESSAGE_BYTES - 100)
    _, stack = describe(_caught(message, depth=150))
    assert len(stack.encode()) <= MAX_STACK_BYTES
    assert stack.startswith("Traceback (most recent call last):")
    assert "bytes cut ...]" in stack
    assert stack.endswith(f"UserError: {message}\n")  # the message whole, at the end
    assert "in _raise" in stack.split("bytes cut ...]")[1]  # frames near the raise stay


def test_a_huge_message_loses_its_middle_only() -> None:
    message = "begin " + "x" * 2_000_000 + " end"
    _, stack = describe(_caught(message))
    assert len(stack.encode()) <= MAX_STACK_BYTES
    assert "UserError: begin xxx" in stack
    assert stack.endswith(" end\n")


def test_a_long_type_name_is_cut() -> None:
    error = type("E" * 1000, (Exception,), {})("boom")
    name, _ = describe(error)
    assert len(name.encode()) == MAX_NAME_BYTES


@given(st.text(max_size=3000), st.integers(min_value=40, max_value=2000))
def test_clip_middle_fits_and_keeps_both_ends(text: str, limit: int) -> None:
    clipped = clip_middle(text, limit)
    assert len(clipped.encode()) <= limit
    if len(text.encode()) <= limit:
        assert clipped == text
    else:
        assert "bytes cut ...]" in clipped
