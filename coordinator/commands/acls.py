"""``jm acls CLUSTER_ID --client P --worker P --coordinator P --reader P [--apply]``.

The Kafka ACLs of each role (docs/security.md, "Kafka ACLs per role"), printed as
``kafka-acls.sh`` commands or created through the admin API (``--apply``; aiokafka's
admin client has no ``create_acls``, so the CreateAcls request is sent as it is).
Registered by ``coordinator.commands.topics`` (both set up the broker for a cluster).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from typing import Final

from coordinator.commands.common import fail, run

# Kafka's own codes (org.apache.kafka.common.{resource,acl}).
RESOURCE: Final = {"TOPIC": 2, "GROUP": 3, "CLUSTER": 4, "TRANSACTIONAL_ID": 5}
PATTERN: Final = {"LITERAL": 3, "PREFIXED": 4}
OPERATION: Final = {
    "All": 2, "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8,
    "DescribeConfigs": 10, "AlterConfigs": 11, "IdempotentWrite": 12,
}  # fmt: skip
ALLOW: Final = 3
ROLES: Final = ("client", "worker", "coordinator", "reader")
CLI_FLAG: Final = {"TOPIC": "--topic", "GROUP": "--group", "TRANSACTIONAL_ID": "--transactional-id"}


@dataclass(frozen=True)
class Acl:
    """Allow `principal` the `operations` on one resource pattern."""

    role: str
    principal: str
    resource: str  # RESOURCE key
    name: str
    pattern: str  # PATTERN key
    operations: tuple[str, ...]

    def command(self, bootstrap: str) -> str:
        """The ``kafka-acls.sh`` command that adds it."""
        words = ["kafka-acls.sh", "--bootstrap-server", bootstrap, "--add",
                 "--allow-principal", self.principal]  # fmt: skip
        for op in self.operations:
            words += ["--operation", op]
        if self.resource == "CLUSTER":
            words.append("--cluster")
        else:
            words += [CLI_FLAG[self.resource], self.name]
        if self.pattern == "PREFIXED":
            words += ["--resource-pattern-type", "prefixed"]
        return shlex.join(words)


def principal_of(name: str) -> str:
    """``alice`` -> ``User:alice``; a name with a type (``User:x``) is kept."""
    return name if ":" in name else f"User:{name}"


def acl_set(cluster_id: str, principals: dict[str, list[str]], job_topics: list[str]) -> list[Acl]:
    """Every ACL of the cluster `cluster_id` for the principals of each role."""
    from schemas.catalog import Catalog
    from schemas.edges import edge_topic_prefix
    from worker.operators.exactly_once import MARKER_ROLE

    c = Catalog(cluster_id)
    p = f"{c.prefix}."
    edges = edge_topic_prefix(c, "x").removesuffix("x.")  # "<prefix>.edge."
    read, meta = ("Read", "Describe", "DescribeConfigs"), ("Describe", "DescribeConfigs")
    rules: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {
        # Submit, and read everything a jm command reads (state, events, replicas).
        "client": [
            ("TOPIC", p, "PREFIXED", read),
            ("TOPIC", c.submissions.name, "LITERAL", ("Write",)),
            ("GROUP", c.leader_group_id, "LITERAL", ("Describe",)),
        ],
        # Its reports and heartbeats, the commands topic (Kafka ACLs cannot name one
        # partition), edge topics, checkpoint state, sink markers and job topics.
        "worker": [
            ("TOPIC", p, "PREFIXED", meta),
            ("TOPIC", c.reports.name, "LITERAL", ("Write",)),
            ("TOPIC", c.heartbeats.name, "LITERAL", ("Write",)),
            ("TOPIC", c.commands.name, "LITERAL", ("Read",)),
            ("TOPIC", c.state.name, "LITERAL", ("Read", "Write")),
            ("TOPIC", edges, "PREFIXED", ("Create", "Read", "Write")),
            ("TOPIC", f"{p}{MARKER_ROLE}", "LITERAL", ("Create", "Read", "Write")),
            ("TRANSACTIONAL_ID", f"{cluster_id}-", "PREFIXED", ("Write", "Describe")),
            *[("TOPIC", t, "PREFIXED", ("Create", "Read", "Write", *meta)) for t in job_topics],
        ],
        # Everything of the cluster: its topics, consumer groups and transactional ids.
        "coordinator": [
            ("TOPIC", p, "PREFIXED", ("All",)),
            ("GROUP", p, "PREFIXED", ("All",)),
            ("TRANSACTIONAL_ID", p, "PREFIXED", ("All",)),
            ("CLUSTER", "kafka-cluster", "LITERAL", ("Describe", "IdempotentWrite")),
        ],
        "reader": [
            ("TOPIC", p, "PREFIXED", read),
            ("GROUP", c.leader_group_id, "LITERAL", ("Describe",)),
        ],
    }
    return [
        Acl(role, principal_of(who), resource, name, pattern, ops)
        for role in ROLES
        for who in principals.get(role, [])
        for resource, name, pattern, ops in rules[role]
    ]


async def apply(bootstrap: str, acls: list[Acl]) -> int:
    """Create `acls` through the admin API (the process's SASL/TLS settings); the
    number of ACL entries created (creating an existing one is not an error)."""
    from aiokafka.protocol.admin import CreateAclsRequest

    from schemas import kafkaio

    admin = kafkaio.admin_client(bootstrap_servers=bootstrap)
    await admin.start()
    created = 0
    try:
        for acl in acls:
            for op in acl.operations:
                request = CreateAclsRequest(
                    RESOURCE[acl.resource], acl.name, PATTERN[acl.pattern], acl.principal,
                    "*", OPERATION[op], ALLOW,
                )  # fmt: skip
                response = await admin._send_request(request)
                for code, message in response.creation_responses:
                    if code != 0:
                        raise RuntimeError(
                            f"creating ACL {acl.principal} {op} {acl.resource} {acl.name} "
                            f"failed: error {code} {message or ''}".strip()
                        )
                created += 1
    finally:
        await admin.close()
    return created


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from coordinator.commands.common import add_connection_flags

    p = sub.add_parser(
        "acls",
        help="print (or --apply) the Kafka ACLs of each role for a cluster",
        description="The Kafka ACLs of the client, worker, coordinator and reader roles "
        "(docs/security.md), as kafka-acls.sh commands, or created with --apply.",
    )
    p.add_argument("acl_cluster_id", metavar="CLUSTER_ID")
    for role in ROLES:
        p.add_argument(
            f"--{role}", action="append", default=[], metavar="PRINCIPAL",
            help=f"a principal of the {role} role (User:NAME or NAME; repeatable)",
        )  # fmt: skip
    p.add_argument(
        "--job-topic", action="append", default=[], metavar="PREFIX",
        help="topics jobs read and write (prefix; the worker role gets them)",
    )  # fmt: skip
    p.add_argument(
        "--apply", action="store_true",
        help="create them through the admin API (needs an ACL-admin principal)",
    )  # fmt: skip
    add_connection_flags(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from coordinator.commands.common import settings_from

    settings = settings_from(args)
    principals = {role: list(getattr(args, role)) for role in ROLES}
    if not any(principals.values()):
        return fail("acls: name at least one principal (--client, --worker, --coordinator, "
                    "--reader)")  # fmt: skip
    try:
        acls = acl_set(args.acl_cluster_id, principals, list(args.job_topic))
    except ValueError as err:
        return fail(f"acls: {err}")
    if not args.apply:
        for acl in acls:
            print(f"# {acl.role}\n{acl.command(settings.bootstrap_servers)}")
        return 0
    return run(_apply(settings.bootstrap_servers, acls))


async def _apply(bootstrap: str, acls: list[Acl]) -> int:
    try:
        created = await apply(bootstrap, acls)
    except RuntimeError as err:
        return fail(f"acls: {err}", 1)
    print(f"{created} ACL entries created on {bootstrap}", file=sys.stderr)
    return 0
