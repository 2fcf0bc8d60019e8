"""How ``jm`` words what the journal says: reasons, exception messages, outcomes.

Pure functions over journal facts, tested directly (tests/test_cli_present.py).
"""

from __future__ import annotations

import re
from typing import Final

#: Width of one exception message in ``jm status`` (``--json`` has it whole).
MESSAGE_WIDTH: Final = 160

# A line of a Python trace that names the exception: ``pkg.mod.Name: message``
# or a bare ``Name`` (no message), not indented.
_EXCEPTION_LINE = re.compile(r"(?P<name>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?")


def reasons(reason: str) -> list[str]:
    """The reasons one rejection joins (``schemas.limits.bounded_reason`` joins them
    with ``"; "``), one per item."""
    return [part.strip() for part in reason.split("; ") if part.strip()]


def clip_line(text: str, width: int = MESSAGE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def exception_message(error_name: str, trace: str) -> str:
    """An exception's own message from what a worker reported (a Python trace, whose
    last lines are ``Name: message``) or from a plain cause: its first line."""
    lines = trace.splitlines()
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        for i in range(len(lines) - 1, -1, -1):
            line = lines[i]
            if line[:1].isspace() or not line:
                continue
            match = _EXCEPTION_LINE.fullmatch(line)
            if match and match["name"].rsplit(".", 1)[-1] == error_name:
                return match["message"] or ""
        # Not found (a cut trace): the last line that is not a frame.
        tail = [line for line in lines if line and not line[:1].isspace()]
        return tail[-1] if tail else ""
    return next((line.strip() for line in lines if line.strip()), "")


def exception_line(error_name: str, trace: str, width: int = MESSAGE_WIDTH) -> str:
    """``Name: message`` on one line, clipped to `width`."""
    message = exception_message(error_name, trace)
    return clip_line(f"{error_name}: {message}" if message else error_name, width)
