"""How every Kafka client of a process authenticates and encrypts: one settings object.

``KafkaSecurity`` is read from the configuration (flags over environment):

- ``JM_KAFKA_SECURITY_PROTOCOL``: PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
- ``JM_KAFKA_SASL_MECHANISM``: PLAIN (default), SCRAM-SHA-256 or SCRAM-SHA-512
- ``JM_KAFKA_SASL_USERNAME``, ``JM_KAFKA_SASL_PASSWORD`` (or ``JM_KAFKA_SASL_PASSWORD_FILE``)
- ``JM_KAFKA_SSL_CAFILE``, ``JM_KAFKA_SSL_CERTFILE``, ``JM_KAFKA_SSL_KEYFILE``

A process installs its object once at start (``install``: the ``jm`` commands do it
in ``settings_from``, ``jm worker`` in its handler); ``install`` also exports it to
the process environment, so the slot processes a worker spawns build their clients
with the same settings. Every client is built through ``schemas.kafkaio``
(``producer``, ``consumer``, ``admin_client``), which adds ``current().client_options()``.

The password never appears in ``repr``, in logs or in ``masked()`` (what
``/jobmanager/config`` and the ``jm coordinator`` start-up line show). Redis needs no
object: AUTH and TLS go in the URL (``redis://:password@host:6379/0``,
``rediss://...``), and ``mask_url`` hides the password wherever a URL is shown.
"""

from __future__ import annotations

import argparse
import functools
import os
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # ssl is imported only when TLS is used (`jm --help` stays fast)
    import ssl

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Field -> environment variable (``sasl_password`` also takes ``..._FILE``).
ENVIRONMENT: Final = {
    "security_protocol": "JM_KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "JM_KAFKA_SASL_MECHANISM",
    "sasl_username": "JM_KAFKA_SASL_USERNAME",
    "sasl_password": "JM_KAFKA_SASL_PASSWORD",
    "ssl_cafile": "JM_KAFKA_SSL_CAFILE",
    "ssl_certfile": "JM_KAFKA_SSL_CERTFILE",
    "ssl_keyfile": "JM_KAFKA_SSL_KEYFILE",
}
PASSWORD_FILE_ENV: Final = "JM_KAFKA_SASL_PASSWORD_FILE"
MASK: Final = "***"


class SecurityError(ValueError):
    """A connection-security setting cannot be used (the message says which and why)."""


@dataclass(frozen=True, kw_only=True)
class KafkaSecurity:
    """SASL and TLS settings shared by every Kafka client of a process."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise SecurityError(
                f"Kafka security protocol {self.security_protocol!r} is not one of "
                f"{', '.join(PROTOCOLS)}"
            )
        if self.sasl_mechanism not in MECHANISMS:
            raise SecurityError(
                f"SASL mechanism {self.sasl_mechanism!r} is not one of {', '.join(MECHANISMS)}"
            )
        if self.sasl and not (self.sasl_username and self.sasl_password is not None):
            raise SecurityError(
                f"{self.security_protocol} needs a SASL username and password "
                f"(${ENVIRONMENT['sasl_username']}, ${ENVIRONMENT['sasl_password']} or "
                f"${PASSWORD_FILE_ENV})"
            )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise SecurityError("an SSL key file needs its certificate file")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, **overrides: Any) -> KafkaSecurity:
        """The environment, then `overrides` (flags) that are not None; the password
        file (flag ``sasl_password_file`` or ``$JM_KAFKA_SASL_PASSWORD_FILE``) is read
        when no password is given."""
        env = dict(os.environ) if environ is None else environ
        values: dict[str, Any] = {}
        for name, key in ENVIRONMENT.items():
            if env.get(key):
                values[name] = env[key]
        password_file = overrides.pop("sasl_password_file", None) or env.get(PASSWORD_FILE_ENV)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "sasl_password" not in values and password_file:
            try:
                with open(password_file, encoding="utf-8") as f:
                    values["sasl_password"] = f.read().strip()
            except OSError as err:
                raise SecurityError(f"SASL password file not read: {err}") from None
        if "security_protocol" in values:
            values["security_protocol"] = str(values["security_protocol"]).upper()
        if "sasl_mechanism" in values:
            values["sasl_mechanism"] = str(values["sasl_mechanism"]).upper()
        return cls(**values)

    @functools.cached_property
    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        import ssl

        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.tls:
            options["ssl_context"] = self._ssl_context
        if self.sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options

    def masked(self) -> dict[str, str]:
        """The settings as shown to people: the password replaced by ``***``."""
        shown: dict[str, str] = {"security-protocol": self.security_protocol}
        if self.sasl:
            shown["sasl-mechanism"] = self.sasl_mechanism
            shown["sasl-username"] = self.sasl_username or ""
            shown["sasl-password"] = MASK
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value:
                shown[name.replace("_", "-")] = value
        return shown

    def environment(self) -> dict[str, str]:
        """The environment variables that make a child process load these settings."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[ENVIRONMENT[f.name]] = str(value)
        return env


#: The installed settings (one entry, "kafka"), set by ``install`` or ``current``.
_installed: dict[str, KafkaSecurity] = {}


def install(security: KafkaSecurity) -> None:
    """Make `security` the settings of every Kafka client this process (and the
    processes it starts) builds from now on."""
    _installed["kafka"] = security
    for key in (*ENVIRONMENT.values(), PASSWORD_FILE_ENV):
        os.environ.pop(key, None)
    os.environ.update(security.environment())


def current() -> KafkaSecurity:
    """The installed settings; before any ``install``, those of the environment."""
    if "kafka" not in _installed:
        _installed["kafka"] = KafkaSecurity.load()
    return _installed["kafka"]


def mask_url(url: str) -> str:
    """`url` with its password (if any) replaced by ``***`` (Redis URLs and the like)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


#: Flag dest -> ``KafkaSecurity.load`` keyword. No flag takes the password itself
#: (a command line is visible to every user of the machine): its file or the environment.
FLAGS: Final = {
    "kafka_security_protocol": "security_protocol",
    "kafka_sasl_mechanism": "sasl_mechanism",
    "kafka_sasl_username": "sasl_username",
    "kafka_sasl_password_file": "sasl_password_file",
    "kafka_ssl_cafile": "ssl_cafile",
    "kafka_ssl_certfile": "ssl_certfile",
    "kafka_ssl_keyfile": "ssl_keyfile",
}


def add_flags(group: argparse._ArgumentGroup) -> None:
    """The Kafka SASL/TLS flags of every command that connects (docs/security.md)."""
    protocol, mechanism = ENVIRONMENT["security_protocol"], ENVIRONMENT["sasl_mechanism"]
    group.add_argument("--kafka-security-protocol", choices=PROTOCOLS,
                       help=f"default ${protocol} or PLAINTEXT")  # fmt: skip
    group.add_argument("--kafka-sasl-mechanism", choices=MECHANISMS,
                       help=f"default ${mechanism} or PLAIN")  # fmt: skip
    group.add_argument("--kafka-sasl-username", help=f"default ${ENVIRONMENT['sasl_username']}")
    group.add_argument(
        "--kafka-sasl-password-file",
        help=f"file holding the SASL password (default ${PASSWORD_FILE_ENV}, "
        f"or the password itself in ${ENVIRONMENT['sasl_password']})",
    )
    group.add_argument("--kafka-ssl-cafile", help=f"default ${ENVIRONMENT['ssl_cafile']}")
    group.add_argument("--kafka-ssl-certfile", help=f"default ${ENVIRONMENT['ssl_certfile']}")
    group.add_argument("--kafka-ssl-keyfile", help=f"default ${ENVIRONMENT['ssl_keyfile']}")


#: How `jm config show` and docs/configuration.md list the Kafka SASL/TLS settings beside
#: the settings model: (key, KafkaSecurity field, default as shown).
SHOWN: Final = (
    ("kafka.security.protocol", "security_protocol", "PLAINTEXT"),
    ("kafka.sasl.mechanism", "sasl_mechanism", "PLAIN"),
    ("kafka.sasl.username", "sasl_username", ""),
    ("kafka.sasl.password", "sasl_password", ""),
    ("kafka.sasl.password-file", "sasl_password_file", ""),
    ("kafka.ssl.cafile", "ssl_cafile", ""),
    ("kafka.ssl.certfile", "ssl_certfile", ""),
    ("kafka.ssl.keyfile", "ssl_keyfile", ""),
)


def shown_env(field_name: str) -> str:
    return PASSWORD_FILE_ENV if field_name == "sasl_password_file" else ENVIRONMENT[field_name]


def shown_flag(field_name: str) -> str:
    """The flag of a field ("" for the password, which has only its file's flag)."""
    dest = next((d for d, f in FLAGS.items() if f == field_name), None)
    return "" if dest is None else "--" + dest.replace("_", "-")


def shown_rows(
    args: argparse.Namespace | None = None, environ: dict[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """(key, value as shown, source) of each Kafka SASL/TLS setting: the flags of
    ``add_flags`` in `args`, else the environment, else the default; the password
    masked (its file's path is shown, never its content)."""
    env = dict(os.environ) if environ is None else environ
    rows = []
    for key, field_name, default in SHOWN:
        dest = shown_flag(field_name)[2:].replace("-", "_")
        flagged = getattr(args, dest, None) if args is not None and dest else None
        variable = shown_env(field_name)
        if flagged is not None:
            value, source = str(flagged), f"flag {shown_flag(field_name)}"
        elif env.get(variable):
            value, source = env[variable], f"env {variable}"
        else:
            value, source = default, "default"
        if field_name == "sasl_password" and value:
            value = "******"
        rows.append((key, value, source))
    return rows


def from_flags(args: argparse.Namespace) -> KafkaSecurity:
    """The settings of the flags ``add_flags`` added, over the environment."""
    return KafkaSecurity.load(**{key: getattr(args, dest, None) for dest, key in FLAGS.items()})
