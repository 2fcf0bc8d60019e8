"""Snapshot dicts and the state digest.

``state_digest`` is sha256 over canonical JSON of ``state_to_dict``: sorted
keys, no whitespace, ASCII, floats as hex (see serde). It depends on neither
the hash seed nor the process. The journal offset a state reflects is not in
the state, hence not in the digest: replicas and snapshots carry it beside
(so digest(snapshot + tail) == digest(full replay) holds at equal offsets).
"""

import hashlib
import json
from collections.abc import Iterator
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


#: Containers down to this depth are written member by member (``json_pieces``). For the
#: largest state (65,536 subtasks, 13 MB of JSON): at depth 3, 673 pieces of at most 130 KB,
#: the longest hold of the interpreter lock 51 ms against 294 ms in one call, for 0.43 s
#: against 0.30 s of encoding (depth 5: 0.90 s).
PIECE_DEPTH: Final = 3


def json_pieces(value: Any, sort_keys: bool, depth: int = PIECE_DEPTH) -> Iterator[str]:
    """``json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=True)``,
    the same text, in pieces: dicts (with string keys) and lists down to `depth` are
    written member by member, each deeper value by one call of the C encoder. That
    encoder holds the interpreter lock for a whole call: one call over the state of
    65,536 subtasks (a digest every status publish, a snapshot) held it for seconds on
    a loaded host, so the lease renewer thread could not run and the lease lapsed."""
    if depth > 0 and isinstance(value, dict) and all(type(k) is str for k in value):
        items = sorted(value.items()) if sort_keys else value.items()
        yield "{"
        for n, (k, v) in enumerate(items):
            yield f"{',' if n else ''}{json.dumps(k)}:"
            yield from json_pieces(v, sort_keys, depth - 1)
        yield "}"
    elif depth > 0 and isinstance(value, list):
        yield "["
        for n, v in enumerate(value):
            if n:
                yield ","
            yield from json_pieces(v, sort_keys, depth - 1)
        yield "]"
    else:
        yield json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=True)


def canonical_json(state: State) -> bytes:
    return "".join(json_pieces(state_to_dict(state), sort_keys=True)).encode("ascii")


def state_digest(state: State) -> str:
    """sha256 hex of the canonical encoding of the state (``canonical_json``), hashed
    piece by piece: the whole text is never held at once (30 MB for 10,000 jobs)."""
    return plain_digest(state_to_dict(state))


def plain_digest(plain: dict[str, Any], in_pieces: bool = True) -> str:
    """``state_digest`` of the state whose ``state_to_dict`` is `plain`. `in_pieces`
    False: the text in one call of the C encoder, about a third faster, for a process
    with no other thread to keep running (a command that prints a state)."""
    if not in_pieces:
        return digest_and_text(plain)[0]
    h = hashlib.sha256()
    for piece in json_pieces(plain, sort_keys=True):
        h.update(piece.encode("ascii"))
    return h.hexdigest()


def digest_and_text(plain: dict[str, Any]) -> tuple[str, str]:
    """(``plain_digest`` of `plain`, the canonical JSON of its ``state`` part), from one
    call of the C encoder: a command that prints the state prints the text it hashed.
    The canonical text of `plain` is ``{"format_version":N,"state":TEXT}`` (sorted keys)."""
    text = json.dumps(plain["state"], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    version = json.dumps(plain["format_version"])
    whole = f'{{"format_version":{version},"state":{text}}}'
    return hashlib.sha256(whole.encode("ascii")).hexdigest(), text
