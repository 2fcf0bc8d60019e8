"""``jm events tail|dump``: decode any of the cluster's topics into readable lines or JSON lines.

Reads with read_committed (what the coordinator acts on). ``dump`` stops at the
end offsets it saw when it started; ``tail`` follows. A record that does not
decode is shown with the reason, never skipped silently.

What a topic holds decides how it is shown: the cluster's own topics hold Avro
events, decoded with the topic's own record size limit; a dead letter is one
line with its reason and origin. Edge topics and the topics jobs read and write
hold data-plane records (JSON, docs/dataplane.md): they are shown as ``DATA``.
Keys, header values and data are shown as text where they are printable UTF-8,
else as ``base64:...``.
"""

from __future__ import annotations

import argparse

from coordinator.commands.common import add_connection_flags, run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = sub.add_parser("events", help="decode records of the cluster's topics")
    verbs = events.add_subparsers(dest="verb", required=True)
    for verb, text in (("tail", "follow new records"), ("dump", "print up to the end and stop")):
        p = verbs.add_parser(verb, help=text)
        add_connection_flags(p)
        p.add_argument(
            "--topic", default="journal", help="role (journal, submissions, ...) or full name"
        )
        where = p.add_mutually_exclusive_group()
        where.add_argument("--from-beginning", action="store_true")
        where.add_argument("--offset", type=int, help="start at this offset of every partition")
        where.add_argument("--since", help="ISO 8601 time, epoch ms, or a duration back (15m)")
        p.add_argument("--job", help="only records of this job id")
        p.add_argument(
            "--type", dest="event_type", help="only events of this type (JobAccepted, ...)"
        )
        p.add_argument("--json", action="store_true", help="JSON lines")
        p.add_argument("--max", type=int, help="stop after this many printed records")
        p.set_defaults(handler=lambda a, follow=(verb == "tail"): _run(a, follow))


def _run(args: argparse.Namespace, follow: bool) -> int:
    # Imported when the command runs, so `jm --help` loads no Kafka or Avro module.
    from coordinator.commands import eventview

    return run(eventview.events(args, follow))
