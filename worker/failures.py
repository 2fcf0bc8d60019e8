"""How a task failure is described in a report: bounded, with the message kept whole.

User code decides how long an exception's message and traceback are (a message
holding a whole input record, a recursion 1,000 frames deep). Reported as is, a
failure could exceed the 1 MiB a Kafka record may hold, and the coordinator
keeps only a bounded trace anyway. So the worker cuts what it reports:

- the exception's own message (the last lines of the trace: ``Type: message``)
  is kept whole up to ``MAX_MESSAGE_BYTES``; a longer one loses its middle;
- the frames above it keep their beginning and their end (where the error was
  raised) and lose their middle, with a marker saying how much was cut;
- everything together fits ``MAX_STACK_BYTES`` of UTF-8; the exception's name
  fits ``MAX_NAME_BYTES``.

Pure: no I/O. Tested directly (tests/worker/test_failures.py).
"""

from __future__ import annotations

import traceback
from typing import Final

#: a reported trace, UTF-8 bytes (the coordinator keeps 8 KiB of it).
MAX_STACK_BYTES: Final = 8_192
#: the exception's own message at the end of the trace, kept whole up to this.
MAX_MESSAGE_BYTES: Final = 4_096
#: the exception's type name.
MAX_NAME_BYTES: Final = 256


def _marker(cut: int) -> str:
    return f"\n[... {cut} bytes cut ...]\n"


def clip_middle(text: str, limit: int) -> str:
    """`text` if it fits `limit` UTF-8 bytes, else its beginning and end around a
    marker (a limit below the marker's ~40 bytes gets the marker alone)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    marker_room = len(_marker(len(data)).encode())
    keep = max(0, limit - marker_room)
    head, tail = keep // 2, keep - keep // 2
    cut = len(data) - head - tail
    tail_bytes = data[len(data) - tail :] if tail else b""
    clipped = (
        data[:head].decode(errors="ignore") + _marker(cut) + tail_bytes.decode(errors="ignore")
    )
    return clipped


def clip_end(text: str, limit: int) -> str:
    """The beginning of `text` that fits `limit` UTF-8 bytes."""
    return text.encode()[:limit].decode(errors="ignore")


def describe(error: BaseException) -> tuple[str, str]:
    """(name, trace) of a failure, bounded as the module docstring says."""
    name = clip_end(type(error).__name__, MAX_NAME_BYTES)
    message = "".join(traceback.format_exception_only(type(error), error))
    frames = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if frames.endswith(message):
        frames = frames[: len(frames) - len(message)]
    message = clip_middle(message, MAX_MESSAGE_BYTES)
    room = MAX_STACK_BYTES - len(message.encode())
    return name, clip_middle(frames, room) + message
