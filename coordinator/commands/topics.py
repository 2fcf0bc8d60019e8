"""``jm topics create|describe``: the catalog's topics on the broker."""

from __future__ import annotations

import argparse
import json
from typing import Any

from coordinator.commands.common import add_connection_flags, catalog_from, fail, run, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = sub.add_parser("topics", help="create or describe the cluster's topics")
    verbs = topics.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="create every missing topic (idempotent)")
    add_connection_flags(create)
    create.set_defaults(handler=lambda a: run(_create(a)))
    describe = verbs.add_parser("describe", help="each topic, its configuration and problems")
    add_connection_flags(describe)
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(handler=lambda a: run(_describe(a)))
    # `jm acls` sets up the broker too; registered here (no entry point of its own,
    # so an installed package needs no reinstall to get it).
    from coordinator.commands import acls

    acls.register(sub)


async def _create(args: argparse.Namespace) -> int:
    from schemas import kafkaio  # here, not at the top: `jm --help` does not need aiokafka

    settings = settings_from(args)
    catalog = catalog_from(settings)
    try:
        outcome = await kafkaio.create_topics(settings.bootstrap_servers, catalog)
        await kafkaio.check_topics(settings.bootstrap_servers, catalog)
    except kafkaio.TopicError as err:
        return fail(str(err), 1)
    for topic in catalog.topics:
        print(f"{outcome.get(topic.name, '?'):8} {topic.name}")
    return 0


async def _describe(args: argparse.Namespace) -> int:
    from schemas import kafkaio

    settings = settings_from(args)
    catalog = catalog_from(settings)
    actual = await kafkaio.describe_topics(
        settings.bootstrap_servers, [t.name for t in catalog.topics]
    )
    rows: list[dict[str, Any]] = []
    for spec in catalog.topics:
        state = actual.get(spec.name)
        rows.append(
            {
                "topic": spec.name,
                "role": spec.role,
                "partitions": state.partitions if state else None,
                "config": {k: state.config.get(k) for k in spec.config()} if state else None,
                "problems": kafkaio.topic_problems(spec, state),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            config = row["config"] or {}
            settings_text = " ".join(f"{k}={v}" for k, v in config.items())
            print(f"{row['topic']:28} partitions={row['partitions']} {settings_text}")
            for problem in row["problems"]:
                print(f"  PROBLEM: {problem}")
    return 1 if any(row["problems"] for row in rows) else 0
