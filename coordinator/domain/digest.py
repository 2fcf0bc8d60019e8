"""Snapshot dicts and the state digest.

``state_digest`` is sha256 over canonical JSON of ``state_to_dict``: sorted
keys, no whitespace, ASCII, floats as hex (see serde). It depends on neither
the hash seed nor the process. The journal offset a state reflects is not in
the state, hence not in the digest: replicas and snapshots carry it beside
(so digest(snapshot + tail) == digest(full replay) holds at equal offsets).
"""

import hashlib
import json
from typing import Any, Final

from coordinator.domain.errors import UnsupportedSnapshot
from coordinator.domain.serde import from_plain, to_plain
from coordinator.domain.state import State

#: Format of state_to_dict; bump on any incompatible change of the state.
STATE_FORMAT_VERSION: Final = (
    5  # 2: lost_incarnations with times, ended_jobs; 3: checkpoint stats, retained handles;
    # 4: savepoints_to_write, stopping_after; 5: a worker's slot holds a tuple of tasks
    # (shared by an operator chain), vertices with chaining and slot_sharing_group
)


def state_to_dict(state: State) -> dict[str, Any]:
    """The state as plain JSON-able data (for snapshots)."""
    return {"format_version": STATE_FORMAT_VERSION, "state": to_plain(state)}


def state_from_dict(data: dict[str, Any]) -> State:
    """Inverse of state_to_dict; refuses other format versions."""
    version = data.get("format_version")
    if version != STATE_FORMAT_VERSION:
        raise UnsupportedSnapshot(
            f"state format {version!r}, this code reads {STATE_FORMAT_VERSION}"
        )
    state = from_plain(State, data["state"])
    assert isinstance(state, State)
    return state


def canonical_json(state: State) -> bytes:
    return json.dumps(
        state_to_dict(state), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def state_digest(state: State) -> str:
    """sha256 hex of the canonical encoding of the state."""
    return hashlib.sha256(canonical_json(state)).hexdigest()
