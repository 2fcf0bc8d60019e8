"""schemas/signing.py: what a signature covers, which role signs which topic, key files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from schemas import signing
from schemas.signing import HEADER, KeyRing, SigningKeysError

ALL = KeyRing.from_mapping(signing.generate())
TOPIC = "c1.journal"


def test_a_signed_record_verifies_and_keeps_its_other_headers() -> None:
    headers = ALL.sign("journal", TOPIC, b"job-1", b"value", [("event-type", b"X")])
    assert headers[0] == ("event-type", b"X")
    assert headers[1][0] == HEADER and headers[1][1].startswith(b"k1:")
    assert ALL.problem("journal", TOPIC, b"job-1", b"value", headers) is None


@pytest.mark.parametrize(
    ("topic", "key", "value"),
    [
        ("c1.journal", b"job-1", b"valuf"),  # another value
        ("c1.journal", b"job-2", b"value"),  # another key
        ("c2.journal", b"job-1", b"value"),  # the same record on another cluster's topic
        ("c1.journal", None, b"value"),  # no key is not the same as any key
        ("c1.journal", b"job-1", None),
    ],
)
def test_the_signature_covers_topic_key_and_value(
    topic: str, key: bytes | None, value: bytes | None
) -> None:
    headers = ALL.sign("journal", TOPIC, b"job-1", b"value")
    problem = ALL.problem("journal", topic, key, value, headers)
    assert problem is not None and problem.startswith("bad signature")


def test_none_and_empty_differ() -> None:
    assert signing.digest(b"s" * 32, "t", None, b"") != signing.digest(b"s" * 32, "t", b"", b"")


def test_unsigned_malformed_and_doubled_signatures_are_refused() -> None:
    signed = ALL.sign("submissions", "c1.submissions", b"j", b"v")
    assert "unsigned record" in str(ALL.problem("submissions", "c1.submissions", b"j", b"v", []))
    assert "unsigned record" in str(ALL.problem("submissions", "c1.submissions", b"j", b"v", None))
    bad = [(HEADER, b"k1:not base64!")]
    assert "malformed" in str(ALL.problem("submissions", "c1.submissions", b"j", b"v", bad))
    twice = [*signed, signed[-1]]
    assert "exactly one" in str(ALL.problem("submissions", "c1.submissions", b"j", b"v", twice))


def test_one_roles_key_cannot_sign_another_roles_topic() -> None:
    """A worker's key signs reports; the same bytes on the journal or as a command are refused."""
    worker_only = KeyRing.from_mapping(signing.generate(), ["worker"])
    forged = worker_only.sign("reports", TOPIC, b"k", b"v")
    assert "bad signature" in str(ALL.problem("journal", TOPIC, b"k", b"v", forged))
    with pytest.raises(KeyError):
        worker_only.sign("journal", TOPIC, b"k", b"v")  # it holds no journal key at all


def test_a_key_of_another_key_file_is_refused() -> None:
    other = KeyRing.from_mapping(signing.generate())  # same id k1, other secrets
    forged = other.sign("reports", "c1.reports", b"tm", b"v")
    assert "bad signature" in str(ALL.problem("reports", "c1.reports", b"tm", b"v", forged))


def test_rotation_the_first_key_signs_every_listed_key_verifies() -> None:
    old, new = signing.new_key("old"), signing.new_key("new")
    before = KeyRing.from_mapping({"client": [old]}, ["client"])
    during = KeyRing.from_mapping({"client": [new, old]}, ["client"])
    after = KeyRing.from_mapping({"client": [new]}, ["client"])
    by_old = before.sign("submissions", "t", b"k", b"v")
    by_new = during.sign("submissions", "t", b"k", b"v")
    assert by_new[-1][1].startswith(b"new:")
    assert during.problem("submissions", "t", b"k", b"v", by_old) is None
    assert during.problem("submissions", "t", b"k", b"v", by_new) is None
    assert after.problem("submissions", "t", b"k", b"v", by_new) is None
    refused = after.problem("submissions", "t", b"k", b"v", by_old)
    assert refused == "signed with key 'old', not a valid client key here"


def test_an_unsigned_ring_neither_signs_nor_checks() -> None:
    ring = KeyRing.insecure()
    assert ring.sign("journal", TOPIC, b"k", b"v", [("a", b"1")]) == [("a", b"1")]
    assert ring.problem("journal", TOPIC, b"k", b"v", []) is None


def test_the_verifier_accepts_only_what_problem_accepts_and_says_the_same() -> None:
    """``Verifier``: its quick ``valid`` is True only for records ``KeyRing.problem``
    accepts, and its ``problem`` is the key ring's, for good and bad records alike
    (rotation, other roles and topics, malformed, doubled, valueless headers, a
    key id longer than the 64 characters a reason quotes)."""
    long_id = {"id": "L" * 64 + "-long", "secret": signing.new_key("x")["secret"]}
    new, old = signing.new_key("new"), signing.new_key("old")
    ring = KeyRing.from_mapping({"journal": [new, old]}, ["journal"])
    long_ring = KeyRing.from_mapping({"journal": [long_id]}, ["journal"])
    old_only = KeyRing.from_mapping({"journal": [old]}, ["journal"])
    signed = ring.sign("journal", TOPIC, b"k", b"v")
    cases: list[tuple[bytes | None, bytes | None, signing.Headers | None]] = [
        (b"k", b"v", signed),
        (b"k", b"v", [("a", None), *signed]),
        (b"k", b"v", old_only.sign("journal", TOPIC, b"k", b"v")),  # rotation: the old key
        (None, b"v", ring.sign("journal", TOPIC, None, b"v")),
        (b"k", None, ring.sign("journal", TOPIC, b"k", None)),
        # Accepted by ``problem`` alone: a header name twice, a signature whose base64
        # is not the canonical one (its unused last bits set).
        (b"k", b"v", [("a", b"1"), ("a", b"2"), *signed]),
        (b"k", b"v", [(HEADER, _noncanonical(signed[-1][1]))]),
        (b"k", b"w", signed),  # another value
        (b"k", b"v", ring.sign("journal", "c2.journal", b"k", b"v")),  # another topic
        (b"k", b"v", ALL.sign("submissions", TOPIC, b"k", b"v")),  # another key file and role
        (b"k", b"v", long_ring.sign("journal", TOPIC, b"k", b"v")),
        (b"k", b"v", []),
        (b"k", b"v", None),
        (b"k", b"v", [*signed, signed[-1]]),
        (b"k", b"v", [(HEADER, None)]),
        (b"k", b"v", [(HEADER, b"new:not base64!")]),
        (b"k", b"v", [(HEADER, b"new" + signed[-1][1][3:-4])]),  # cut short
        (b"k", b"v", [(HEADER, signed[-1][1].replace(b":", b""))]),
    ]
    verifier = ring.verifier("journal", TOPIC)
    verdicts = []
    for key, value, headers in cases:
        problem = ring.problem("journal", TOPIC, key, value, headers)
        assert verifier.problem(key, value, headers) == problem
        if verifier.valid(key, value, headers):
            assert problem is None
        verdicts.append(problem is None)
    assert verdicts == [True] * 7 + [False] * 11
    assert not any(verifier.valid(*case) for case in cases[5:7])  # ``problem`` decided
    # A key id of more than 64 characters never verifies, by either check.
    long_signed = cases[10][2]
    assert long_signed and (long_signed[-1][1] or b"").startswith(b"L" * 64 + b"-long:")
    assert long_ring.problem("journal", TOPIC, b"k", b"v", long_signed) is not None
    assert not long_ring.verifier("journal", TOPIC).valid(b"k", b"v", long_signed)
    # Unsigned rings accept everything, as ``problem`` does.
    assert KeyRing.insecure().verifier("journal", TOPIC).problem(b"k", b"v", None) is None


def _noncanonical(header: bytes) -> bytes:
    """The same signature with the unused low bit of its last base64 digit set."""
    key_id, _, encoded = header.partition(b":")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(encoded[42]) ^ 1]
    changed = encoded[:42] + bytes([last]) + encoded[43:]
    assert changed != encoded and base64.b64decode(changed) == base64.b64decode(encoded)
    return key_id + b":" + changed


def test_a_process_loads_only_its_roles_and_needs_keys_or_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    signing.write_key_file(path, signing.generate())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert signing.keyring_for(str(path), False, "worker").roles() == ("worker", "command")
    assert signing.keyring_for(str(path), False, "client").roles() == ("client",)
    assert signing.keyring_for(None, True, "worker").unsigned
    assert signing.keyring_for(str(path), True, "worker").unsigned  # the explicit flag wins
    with pytest.raises(SigningKeysError, match="--insecure-unsigned"):
        signing.keyring_for(None, False, "coordinator")


def test_yaml_key_files_are_read(tmp_path: Path) -> None:
    secret = base64.b64encode(b"x" * 32).decode()
    path = tmp_path / "keys.yaml"
    path.write_text(f"client:\n  - id: a\n    secret: {secret}\n")
    assert KeyRing.load(path, ["client"]).keys["client"][0].id == "a"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must map roles"),
        ({"admin": []}, "unknown role"),
        ({}, "no key for the client role"),
        ({"client": [{"id": "a"}]}, "at least 32"),
        ({"client": [{"id": "a", "secret": "%%%"}]}, "not base64"),
        ({"client": [{"id": "a:b", "secret": "eA=="}]}, "cannot contain ':'"),
        ({"client": [signing.new_key("a"), signing.new_key("a")]}, "must differ"),
    ],
)
def test_unusable_key_files_are_refused_without_showing_secrets(data: object, message: str) -> None:
    with pytest.raises(SigningKeysError, match=message) as raised:
        KeyRing.from_mapping(data, ["client"])
    for entries in data.values() if isinstance(data, dict) else ():
        for entry in entries:
            secret = entry.get("secret")
            if secret and len(secret) > 8:
                assert secret not in str(raised.value)


def test_secrets_never_show_in_a_repr_or_description() -> None:
    data = signing.generate()
    ring = KeyRing.from_mapping(data)
    shown = repr(ring) + ring.describe()
    for entries in data.values():
        assert entries[0]["secret"] not in shown
        assert base64.b64decode(entries[0]["secret"]).hex() not in shown
    assert "journal: k1" in ring.describe()
    assert json.loads(json.dumps(data)) == data
