"""``jm history``: the job history server (coordinator/history/, docs/history.md)."""

from __future__ import annotations

import argparse
import os

from coordinator.commands.common import add_connection_flags, catalog_from, fail, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "history",
        help="serve ended jobs from the journal (a faust-streaming app; Flink's HistoryServer)",
    )
    add_connection_flags(p)
    p.add_argument(
        "--name",
        default="history",
        help="names its consumer group and table topics <cluster id>.<name>...; a new "
        "name starts empty and replays the journal from the start (default history)",
    )
    p.add_argument("--host", default=os.environ.get("JM_HISTORY_HOST", "127.0.0.1"),
                   help="HTTP host (default $JM_HISTORY_HOST or 127.0.0.1)")  # fmt: skip
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("JM_HISTORY_PORT", "8083")),
        help="HTTP port (default $JM_HISTORY_PORT or 8083; 0 picks a free port and prints it)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="faust's working directory (default: a fresh temporary one; the tables "
        "themselves live in memory and recover from their changelog topics)",
    )
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import tempfile

    import faust

    from coordinator.history.app import build
    from coordinator.history.http import build_app
    from coordinator.rest.server import bind
    from schemas.signing import SigningKeysError, keyring_for

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = settings_from(args)
    catalog = catalog_from(settings)
    try:
        keys = keyring_for(settings.signing_keys, settings.insecure_unsigned, "history")
    except SigningKeysError as err:
        return fail(f"jm history: {err}")
    try:
        sock = bind(args.host, args.port)
    except OSError as err:
        return fail(f"jm history: cannot listen on {args.host}:{args.port}: {err}", 1)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="jm-history-")
    history = build(
        bootstrap=settings.bootstrap_servers,
        catalog=catalog,
        keys=keys,
        name=args.name,
        data_dir=data_dir,
    )
    from aiohttp import web
    from aiokafka.errors import KafkaError

    from coordinator.runtime.journal import JournalError

    # The first fold of the journal, before the faust worker joins its group (see
    # coordinator/history/app.py); the worker then runs on the same loop.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(history.fold_journal())
    except (JournalError, KafkaError) as err:
        return fail(f"jm history: cannot fold the journal: {err or type(err).__name__}", 1)

    @history.app.task  # type: ignore[untyped-decorator]  # once the tables recovered
    async def serve() -> None:
        await history.publish()
        history.ready[0] = True
        runner = web.AppRunner(build_app(history), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
        print(f"history http://{host}:{port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    worker = faust.Worker(
        history.app, loglevel=args.log_level.lower(), quiet=True, redirect_stdouts=False, loop=loop
    )
    worker.execute_from_commandline()
    return 0
