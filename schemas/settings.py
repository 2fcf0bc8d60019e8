"""Connection settings every process shares: one frozen object, passed in explicitly.

Read from flags (the caller passes overrides), then the environment, then the
defaults. Kafka's SASL/TLS settings are a ``schemas.security.KafkaSecurity``
(``JM_KAFKA_SECURITY_PROTOCOL`` and the like). Environment names:
``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``, ``JM_CLUSTER_ID`` and
``JM_SIGNING_KEYS_FILE`` (the same names the Docker image, the Makefile and the
test fixtures use; also ``JM_BOOTSTRAP_SERVERS`` and ``JM_REDIS_URL``), matched
without regard to case.

Standard library only, unlike the worker's pydantic settings: every ``jm``
command loads this object, and importing pydantic-settings alone costs more CPU
than the rest of ``jm list``'s imports together (issue 11, item 9).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from schemas.signing import KeyRing

from schemas.security import KafkaSecurity

#: Where each field is looked up in the environment, first name found wins.
ENVIRONMENT: Final = {
    "cluster_id": ("JM_CLUSTER_ID",),
    "bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "JM_BOOTSTRAP_SERVERS"),
    "redis_url": ("REDIS_URL", "JM_REDIS_URL"),
    "signing_keys": ("JM_SIGNING_KEYS_FILE",),
}
CLUSTER_ID_PATTERN: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,99}")  # fullmatch


class SettingsError(ValueError):
    """A setting has a value that cannot be used (the message says which and why)."""


def _from_environment(name: str, default: str) -> str:
    for key in ENVIRONMENT[name]:
        if key in os.environ:
            return os.environ[key]
        for actual, value in os.environ.items():
            if actual.upper() == key:
                return value
    return default


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    """Where the cluster lives and what it is called. A field not given is read from
    the environment (``ENVIRONMENT``), else its default."""

    #: namespaces topics, transactional id, consumer groups and Redis keys
    cluster_id: str = field(default_factory=lambda: _from_environment("cluster_id", "jm"))
    bootstrap_servers: str = field(
        default_factory=lambda: _from_environment("bootstrap_servers", "127.0.0.1:9092")
    )
    redis_url: str = field(
        default_factory=lambda: _from_environment("redis_url", "redis://127.0.0.1:6379/0")
    )
    #: SASL/TLS of every Kafka client (``schemas.security``; the password never in repr)
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity.load)

    #: the key file of signed records (schemas/signing.py); empty: none given
    signing_keys: str = field(default_factory=lambda: _from_environment("signing_keys", ""))
    #: run without signing or verifying records (--insecure-unsigned): never the default
    insecure_unsigned: bool = False

    def __post_init__(self) -> None:
        for name in ENVIRONMENT:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise SettingsError(f"{name} must be a string, not {type(value).__name__}")
        if not CLUSTER_ID_PATTERN.fullmatch(self.cluster_id):
            raise SettingsError(
                f"cluster id {self.cluster_id!r} is not valid: 1-100 letters, digits, '.', '_' "
                f"or '-', starting with a letter or digit"
            )

    @classmethod
    def load(cls, **overrides: Any) -> ClusterSettings:
        """Environment first, then explicit overrides (flags) that are not None."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})

    def keyring(self, process: str) -> KeyRing:
        """The signing keys a process of this kind runs with (schemas/signing.py)."""
        from schemas.signing import keyring_for

        return keyring_for(self.signing_keys, self.insecure_unsigned, process)

    def journal_reader_keys(self) -> KeyRing | None:
        """For what only reads the journal (``jm status``, REST history): the journal
        key when the key file holds it, so the journal is verified as replicas verify
        it; None (read unverified) without it or when running unsigned."""
        from schemas.signing import reader_keyring

        return None if self.insecure_unsigned else reader_keyring(self.signing_keys)


#: Topic prefixes no job may name, besides the cluster's own (comma-separated);
#: the coordinator, workers and ``jm submit`` read it (docs/security.md).
PROTECTED_TOPIC_PREFIXES_ENV: Final = "JM_PROTECTED_TOPIC_PREFIXES"
#: Worker ids the coordinator lets register (comma-separated); unset or empty: any.
ALLOWED_WORKERS_ENV: Final = "JM_ALLOWED_WORKERS"


def listed(values: list[str] | None, environment: str) -> tuple[str, ...]:
    """A list setting: the flag's values when given (each may be comma-separated),
    else the comma-separated environment variable; blanks dropped, order kept."""
    raw = values if values is not None else [os.environ.get(environment, "")]
    found: list[str] = []
    for item in (part.strip() for text in raw for part in text.split(",")):
        if item and item not in found:
            found.append(item)
    return tuple(found)


#: The environment variable naming the YAML config file (``--config`` wins over it).
CONFIG_FILE_ENV: Final = "JM_CONFIG_FILE"


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--config FILE`` and ``-D key=value`` of the coordinator and the worker, read by
    ``schemas.config`` (pydantic-settings, imported only when the process starts)."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"YAML config file (default ${CONFIG_FILE_ENV}; "
                        "docs/configuration.md)")  # fmt: skip
    parser.add_argument("-D", dest="dynamic", action="append", default=[],
                        metavar="KEY=VALUE", help="set one setting, above the environment "
                        "and the file (repeatable; docs/configuration.md)")  # fmt: skip
