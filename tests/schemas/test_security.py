"""Kafka connection-security settings (schemas/security.py): loading, masking, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from schemas import security
from schemas.security import KafkaSecurity, SecurityError, mask_url

REPO = Path(__file__).resolve().parents[2]


def test_sasl_settings_from_the_environment_and_a_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    env = {
        "JM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "JM_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "JM_KAFKA_SASL_USERNAME": "worker",
        "JM_KAFKA_SASL_PASSWORD_FILE": str(secret),
    }
    loaded = KafkaSecurity.load(env)
    options = loaded.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret"
    assert options["ssl_context"] is not None
    assert "s3cret" not in repr(loaded)
    assert loaded.masked()["sasl-password"] == "***"
    assert "s3cret" not in str(loaded.masked())
    # What a child process gets loads the same settings.
    assert KafkaSecurity.load(loaded.environment()) == loaded


def test_plaintext_adds_nothing_and_bad_settings_are_refused() -> None:
    assert KafkaSecurity.load({}).client_options() == {}
    with pytest.raises(SecurityError, match="needs a SASL username and password"):
        KafkaSecurity.load({"JM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    with pytest.raises(SecurityError, match="not one of"):
        KafkaSecurity.load({}, security_protocol="KERBEROS")


def test_install_exports_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_username="u",
                           sasl_password="p")  # fmt: skip
    monkeypatch.setattr(security, "_installed", {})
    for key in security.ENVIRONMENT.values():
        monkeypatch.delenv(key, raising=False)
    security.install(chosen)
    assert security.current() == chosen
    assert KafkaSecurity.load() == chosen


def test_mask_url() -> None:
    assert mask_url("rediss://:pw@host:6380/0") == "rediss://:***@host:6380/0"
    assert mask_url("redis://user:pw@host/1") == "redis://user:***@host/1"
    assert mask_url("redis://host:6379/0") == "redis://host:6379/0"


def test_jm_refuses_unusable_security_settings_as_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "coordinator", "topics", "describe",
         "--kafka-security-protocol", "SASL_PLAINTEXT"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "needs a SASL username and password" in done.stderr
