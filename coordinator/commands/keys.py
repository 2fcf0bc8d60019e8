"""``jm keys``: the key file of signed records (schemas/signing.py).

- ``jm keys generate FILE``: one random key per role (owner-only file);
- ``jm keys add FILE --role R --id ID [--sign]``: a new key for a role, verifying
  only (listed last), or signing (listed first): the two steps of a rotation;
- ``jm keys retire FILE --role R --id ID``: the last step, the old key goes;
- ``jm keys list FILE``: roles and key ids, the signing one first (never secrets);
- ``jm keys subset FILE OUT --roles R...``: a file with only those roles' keys (a
  worker's file: ``--roles worker command``; a client's: ``--roles client``).

Rotation is documented in docs/security.md ("Signed records").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from coordinator.commands.common import fail

ROLES = ("client", "worker", "command", "journal")  # schemas.signing.ROLES


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser(
        "keys", help="make and rotate the key file of signed records",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    steps = keys.add_subparsers(dest="step", metavar="STEP", required=True)
    generate = steps.add_parser("generate", help="write a new key file, one key per role")
    generate.add_argument("file", type=Path)
    generate.add_argument("--roles", nargs="+", choices=ROLES, default=list(ROLES))
    generate.add_argument("--id", default="k1", help="the keys' id (default k1)")
    generate.add_argument("--force", action="store_true", help="overwrite an existing file")
    generate.add_argument("--if-missing", action="store_true",
                          help="leave an existing file as it is (exit 0)")  # fmt: skip
    generate.set_defaults(handler=_generate)
    add = steps.add_parser("add", help="add a new key to a role (a rotation's first steps)")
    add.add_argument("file", type=Path)
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--id", required=True)
    add.add_argument(
        "--sign", action="store_true",
        help="list it first, so it signs (default: last, it only verifies)",
    )  # fmt: skip
    add.set_defaults(handler=_add)
    retire = steps.add_parser("retire", help="remove a role's key (a rotation's last step)")
    retire.add_argument("file", type=Path)
    retire.add_argument("--role", choices=ROLES, required=True)
    retire.add_argument("--id", required=True)
    retire.set_defaults(handler=_retire)
    show = steps.add_parser("list", help="roles and key ids (never secrets)")
    show.add_argument("file", type=Path)
    show.set_defaults(handler=_list)
    subset = steps.add_parser("subset", help="write a file with only some roles' keys")
    subset.add_argument("file", type=Path)
    subset.add_argument("out", type=Path)
    subset.add_argument("--roles", nargs="+", choices=ROLES, required=True)
    subset.set_defaults(handler=_subset)


def _generate(args: argparse.Namespace) -> int:
    from schemas import signing

    if args.file.exists() and args.if_missing:
        print(f"{args.file} exists: left as it is")
        return 0
    if args.file.exists() and not args.force:
        return fail(f"{args.file} exists (--force overwrites it)", 1)
    signing.write_key_file(args.file, signing.generate(args.roles, args.id))
    print(f"wrote {args.file}: roles {', '.join(args.roles)}, key id {args.id} (mode 600)")
    return 0


def _read(path: Path) -> dict[str, list[dict[str, Any]]]:
    from schemas import signing

    data = signing.parse_key_file(path.read_text(), path.name)
    signing.KeyRing.from_mapping(data, [r for r in ROLES if r in data])  # refuse a bad file
    return {role: list(keys) for role, keys in data.items()}


def _add(args: argparse.Namespace) -> int:
    from schemas import signing

    data = _read(args.file)
    keys = data.setdefault(args.role, [])
    if any(k["id"] == args.id for k in keys):
        return fail(f"{args.role} already has a key {args.id!r}", 1)
    new = signing.new_key(args.id)
    data[args.role] = [new, *keys] if args.sign else [*keys, new]
    signing.write_key_file(args.file, data)
    print(f"{args.role}: {', '.join(k['id'] for k in data[args.role])} (the first signs)")
    return 0


def _retire(args: argparse.Namespace) -> int:
    from schemas import signing

    data = _read(args.file)
    keys = [k for k in data.get(args.role, []) if k["id"] != args.id]
    if len(keys) == len(data.get(args.role, [])):
        return fail(f"{args.role} has no key {args.id!r}", 1)
    if not keys:
        return fail(f"{args.id!r} is the only {args.role} key: add another first", 1)
    data[args.role] = keys
    signing.write_key_file(args.file, data)
    print(f"{args.role}: {', '.join(k['id'] for k in keys)} (the first signs)")
    return 0


def _subset(args: argparse.Namespace) -> int:
    from schemas import signing

    data = _read(args.file)
    missing = [r for r in args.roles if r not in data]
    if missing:
        return fail(f"{args.file} has no {', '.join(missing)} keys", 1)
    signing.write_key_file(args.out, {r: data[r] for r in args.roles})
    print(f"wrote {args.out}: roles {', '.join(args.roles)} (mode 600)")
    return 0


def _list(args: argparse.Namespace) -> int:
    for role, keys in _read(args.file).items():
        print(f"{role}: {', '.join(k['id'] for k in keys)} (the first signs)")
    return 0
