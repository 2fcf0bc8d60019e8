"""Signed records: HMAC-SHA256 over (topic, key, value), one key set per role.

Every control record carries a ``jm-sig`` header, ``<key id>:<base64 digest>``,
made with the key of the role allowed to write its topic (``SIGNING_ROLE``):

- ``client``: submissions and client requests (``jm submit``, the Python client);
- ``worker``: reports, heartbeats and checkpoint acknowledgements;
- ``command``: the leader's commands and keepalives (workers verify them);
- ``journal``: the journal, snapshots and dead letters (only coordinator replicas
  hold it).

HMAC is symmetric: whoever can verify a role's records can also sign them. So a
worker (which verifies commands) could forge commands to other workers, and any
holder of the journal key could write the journal; what the split buys is that a
client key cannot forge worker reports, commands or the journal, and a worker key
cannot forge the journal or submissions (docs/security.md, "Signed records").

Keys come from a key file (YAML or JSON): ``{role: [{id, secret}, ...]}``, secrets
base64 (at least 32 bytes). The first key of a role signs; every listed key of the
role verifies, which is how a key is rotated. A process loads only the roles it
needs (``KeyRing.load(path, roles)``). Secrets never appear in a repr or a message.

Standard library only (plus PyYAML for YAML files, imported when one is read).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import os
import secrets
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from schemas.settings import SettingsError

HEADER: Final = "jm-sig"
ROLES: Final = ("client", "worker", "command", "journal")
#: Which role signs the records of each catalog topic role.
SIGNING_ROLE: Final[Mapping[str, str]] = {
    "submissions": "client",
    "reports": "worker",
    "heartbeats": "worker",
    "commands": "command",
    "journal": "journal",
    "snapshots": "journal",
    "deadletter": "journal",
    "replicas": "journal",
}
#: The roles each kind of process loads (it signs with some, verifies with others).
PROCESS_ROLES: Final[Mapping[str, tuple[str, ...]]] = {
    "coordinator": ("client", "worker", "command", "journal"),
    "worker": ("worker", "command"),
    "client": ("client",),
    "history": ("journal",),  # verifies the journal it archives (jm history)
}
MIN_SECRET_BYTES: Final = 32
ENV_FILE: Final = "JM_SIGNING_KEYS_FILE"
_DOMAIN: Final = b"jm-sig/1\x00"


class SignatureError(Exception):
    """A record's signature is missing or not valid for its topic (its dead letter's
    error kind)."""


class SigningKeysError(SettingsError):
    """The key file cannot be used, or a process has no keys and was not told to run
    unsigned (the message says which and why; never a secret)."""


@dataclass(frozen=True)
class SigningKey:
    id: str
    secret: bytes = field(repr=False)


@functools.lru_cache(maxsize=64)
def _keyed(secret: bytes) -> hmac.HMAC:
    """The HMAC state after the key and the domain prefix, copied per record (the key
    schedule is the larger part of the cost of a small record's HMAC)."""
    return hmac.new(secret, _DOMAIN, hashlib.sha256)


def _identity(part: bytes | None) -> bytes:
    """One length-prefixed part of a record's identity (None: length -1)."""
    return _NONE if part is None else _LENGTH(len(part)) + part


_LENGTH: Final = struct.Struct(">i").pack
_NONE: Final = _LENGTH(-1)


def digest(secret: bytes, topic: str, key: bytes | None, value: bytes | None) -> bytes:
    """HMAC-SHA256 of the record's identity: topic, key and value, each length-prefixed
    (a missing key or value is length -1, so it differs from an empty one)."""
    mac = _keyed(secret).copy()
    for part in (topic.encode(), key, value):
        mac.update(_identity(part))
    return mac.digest()


Headers = Sequence[tuple[str, bytes | None]]
#: How much of a key id a reason quotes, and so the longest id a signature can name.
_KEY_ID_SHOWN: Final = 64


class Verifier:
    """``KeyRing.problem`` for the records of one topic, for readers that check every
    record (``KeyRing.verifier``). ``valid`` is the quick test: True only for a record
    ``problem`` accepts, computed from the HMAC state after the key and the topic,
    kept per key id (two updates and a digest per record). False means "ask
    ``problem``": the key ring's own check gives the reason, and it alone decides (a
    key id that ``KeyRing.problem`` cuts to 64 characters is not matched here, and is
    found there)."""

    def __init__(self, ring: KeyRing, topic_role: str, topic: str) -> None:
        self._ring, self._role, self._topic = ring, topic_role, topic
        self._states: dict[bytes, hmac.HMAC] = {}
        if ring.unsigned:
            return
        for known in ring.keys[SIGNING_ROLE[topic_role]]:
            if len(known.id) <= _KEY_ID_SHOWN:  # longer ids never match in ``problem``
                mac = _keyed(known.secret).copy()
                mac.update(_identity(topic.encode()))
                self._states[known.id.encode()] = mac

    def problem(
        self, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> str | None:
        """``KeyRing.problem`` of the record (None: its signature is valid)."""
        if self.valid(key, value, headers):
            return None
        return self._ring.problem(self._role, self._topic, key, value, headers)

    def valid(self, key: bytes | None, value: bytes | None, headers: Headers | None) -> bool:
        if self._ring.unsigned:
            return True
        if not headers:
            return False
        named = dict(headers)
        if len(named) != len(headers):
            return False  # a header name twice (never written so): ``problem`` looks
        found = named.get(HEADER)
        if found is None:
            return False
        key_id, sep, encoded = bytes(found).partition(b":")
        state = self._states.get(key_id)
        if state is None or not sep:
            return False
        computed = state.copy()
        computed.update(_identity(key) + _identity(value))
        # The signature as ``KeyRing.sign`` encodes it: what decodes to this MAC.
        return hmac.compare_digest(encoded, binascii.b2a_base64(computed.digest(), newline=False))


@dataclass(frozen=True)
class KeyRing:
    """The keys of the roles this process loaded. ``unsigned`` (``--insecure-unsigned``):
    nothing is signed and nothing is checked."""

    keys: Mapping[str, tuple[SigningKey, ...]]
    unsigned: bool = False

    @classmethod
    def insecure(cls) -> KeyRing:
        return cls({}, unsigned=True)

    @classmethod
    def from_mapping(cls, data: Any, roles: Iterable[str] | None = None) -> KeyRing:
        """Keys from the parsed key file, keeping only `roles` (all when None)."""
        if not isinstance(data, Mapping):
            raise SigningKeysError("the key file must map roles to lists of keys")
        unknown = sorted(set(data) - set(ROLES))
        if unknown:
            raise SigningKeysError(f"unknown role(s) in the key file: {', '.join(unknown)}")
        wanted = tuple(ROLES if roles is None else roles)
        keys: dict[str, tuple[SigningKey, ...]] = {}
        for role in wanted:
            entries = data.get(role)
            if not entries:
                raise SigningKeysError(f"the key file has no key for the {role} role")
            if not isinstance(entries, list):
                raise SigningKeysError(f"{role}: a list of {{id, secret}} is needed")
            keys[role] = tuple(_key(role, n, entry) for n, entry in enumerate(entries))
            ids = [k.id for k in keys[role]]
            if len(set(ids)) != len(ids):
                raise SigningKeysError(f"{role}: key ids must differ")
        return cls(keys)

    @classmethod
    def load(cls, path: str | os.PathLike[str], roles: Iterable[str] | None = None) -> KeyRing:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise SigningKeysError(f"cannot read the key file {path}: {err.strerror}") from None
        return cls.from_mapping(parse_key_file(text, path.name), roles)

    def roles(self) -> tuple[str, ...]:
        return tuple(self.keys)

    def sign(self, topic_role: str, topic: str, key: bytes | None, value: bytes | None,
             headers: Headers = ()) -> list[tuple[str, bytes]]:  # fmt: skip
        """`headers` (without any earlier ``jm-sig``) plus the signature of the role
        that writes `topic_role` topics. Raises KeyError if this process lacks that
        role's keys: a process must never write what it is not allowed to sign."""
        out = [(k, v if v is not None else b"") for k, v in headers if k != HEADER]
        if self.unsigned:
            return out
        signer = self.keys[SIGNING_ROLE[topic_role]][0]
        mac = digest(signer.secret, topic, key, value)
        out.append((HEADER, signer.id.encode() + b":" + base64.b64encode(mac)))
        return out

    def problem(self, topic_role: str, topic: str, key: bytes | None, value: bytes | None,
                headers: Headers | None) -> str | None:  # fmt: skip
        """Why the record's signature is not valid for its topic (None: it is, or this
        ring is unsigned). The reason names key ids, never secrets."""
        if self.unsigned:
            return None
        role = SIGNING_ROLE[topic_role]
        found = [v for k, v in headers or () if k == HEADER]
        if not found:
            return f"unsigned record: no {HEADER} header (a {role} signature is required)"
        if len(found) > 1:
            return f"{len(found)} {HEADER} headers: exactly one is allowed"
        raw = bytes(found[0] or b"")
        key_id, sep, encoded = raw.partition(b":")
        try:
            mac = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            mac = b""
        if not sep or len(mac) != hashlib.sha256().digest_size:
            return f"malformed {HEADER} header (want <key id>:<base64 HMAC-SHA256>)"
        name = key_id.decode(errors="replace")[:_KEY_ID_SHOWN]
        keys = {k.id: k for k in self.keys[role]}
        known = keys.get(name)
        if known is None:
            return f"signed with key {name!r}, not a valid {role} key here"
        if not hmac.compare_digest(mac, digest(known.secret, topic, key, value)):
            return f"bad signature: does not match {role} key {name!r} over topic, key and value"
        return None

    def verifier(self, topic_role: str, topic: str) -> Verifier:
        """The check of the records of one topic, for readers that verify every
        record (the journal's replicas): see ``Verifier``."""
        return Verifier(self, topic_role, topic)

    def describe(self) -> str:
        """For logs: roles and key ids, never secrets."""
        if self.unsigned:
            return "UNSIGNED (--insecure-unsigned): records are neither signed nor verified"
        return "; ".join(f"{r}: {', '.join(k.id for k in ks)}" for r, ks in self.keys.items())


def _key(role: str, index: int, entry: Any) -> SigningKey:
    where = f"{role} key #{index + 1}"
    if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str) or not entry["id"]:
        raise SigningKeysError(f"{where}: an id (a string) and a secret are needed")
    if ":" in entry["id"]:
        raise SigningKeysError(f"{where}: a key id cannot contain ':'")
    try:
        secret = base64.b64decode(str(entry.get("secret", "")), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeysError(f"{where} ({entry['id']}): the secret is not base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise SigningKeysError(
            f"{where} ({entry['id']}): the secret has {len(secret)} bytes, "
            f"at least {MIN_SECRET_BYTES} are needed"
        )
    return SigningKey(entry["id"], secret)


def parse_key_file(text: str, name: str = "key file") -> Any:
    """JSON when it parses as JSON, else YAML."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        # The parser's message may quote the file's text: say only where.
        raise SigningKeysError(f"{name} is neither JSON nor YAML") from None


def new_key(key_id: str) -> dict[str, str]:
    return {"id": key_id, "secret": base64.b64encode(secrets.token_bytes(32)).decode()}


def generate(roles: Iterable[str] = ROLES, key_id: str = "k1") -> dict[str, list[dict[str, str]]]:
    """A fresh key file's content: one random key per role."""
    return {role: [new_key(key_id)] for role in roles}


def write_key_file(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write `data` as JSON, readable by the owner only (created that way, no window)."""
    text = json.dumps(data, indent=2) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def keyring_for(path: str | None, insecure_unsigned: bool, process: str) -> KeyRing:
    """The key ring a process of kind `process` (``PROCESS_ROLES``) runs with: unsigned
    when told so (the flag wins over a key file in the environment: it is explicit),
    else the key file's roles it needs; neither: SigningKeysError."""
    if insecure_unsigned:
        return KeyRing.insecure()
    if path:
        return KeyRing.load(path, PROCESS_ROLES[process])
    raise SigningKeysError(
        f"no signing keys: give --signing-keys FILE or ${ENV_FILE} (make one with "
        "`jm keys generate FILE`), or run with --insecure-unsigned (records are then "
        "neither signed nor verified: anyone who can write the topics controls the cluster)"
    )


def reader_keyring(path: str | None) -> KeyRing | None:
    """For read-only commands: the journal key when a key file holding it is given
    (the journal is then verified as replicas verify it), else None (read unverified)."""
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SigningKeysError(f"cannot read the key file {path}: {err.strerror}") from None
    data = parse_key_file(text, Path(path).name)
    if not isinstance(data, Mapping) or "journal" not in data:
        return None
    return KeyRing.from_mapping(data, ("journal",))
