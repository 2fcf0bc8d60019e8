"""``jm artifacts list|show|delete``: the user-code packages of a cluster's jobs
(docs/user-code.md), through a replica's REST API (``--url`` / ``$JM_REST_URL``).

Registered by coordinator/commands/jobs.py, next to ``jm submit --code``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from coordinator.commands import restapi
from coordinator.commands.common import fail


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "artifacts",
        help="list, show or delete the user-code packages of the cluster's jobs",
        description="The packages jobs brought with `jm submit --code` (docs/user-code.md), "
        "read from a replica's REST API (--url or $JM_REST_URL).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every package a known job references")
    show = actions.add_parser("show", help="one package: what it provides and its jobs")
    show.add_argument("sha256")
    delete = actions.add_parser("delete", help="delete a package no live job uses, now")
    delete.add_argument("sha256")
    for p in (listing, show, delete):
        restapi.add_api_flags(p)
        p.add_argument("--json", action="store_true", help="print the API's JSON")
        p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    api = restapi.api_from(args)
    if api is None:
        return fail("jm artifacts needs a replica's REST API: give --url or set $JM_REST_URL")
    method, path = {
        "list": ("GET", "/artifacts"),
        "show": ("GET", f"/artifacts/{getattr(args, 'sha256', '')}"),
        "delete": ("DELETE", f"/artifacts/{getattr(args, 'sha256', '')}"),
    }[args.action]
    try:
        reply = api.call(method, path)
    except restapi.Unreachable as err:
        return fail(str(err), 4)
    if reply.status >= 400:
        return fail("; ".join(reply.errors), 1)
    if args.json:
        print(json.dumps(reply.body, indent=2))
    elif args.action == "list":
        for row in reply.body.get("artifacts", []):
            print(_line(row))
    elif args.action == "show":
        print(_line(reply.body))
        for key in ("filename", "operators", "functions", "requirements", "jobs"):
            value = reply.body.get(key)
            print(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")
    else:
        print(f"deleted {reply.body.get('sha256')} ({reply.body.get('deleted')} stored copies)")
    return 0


def _line(row: dict[str, Any]) -> str:
    use = "in use" if row.get("in-use") else "unused"
    jobs = ",".join(row.get("jobs", []))
    return f"{row['sha256']}  {row['name']} {row['version']}  {row['size']} B  {use}  {jobs}"
