"""The TaskManager's handle on one slot process: start, talk, kill, replace.

Processes, not threads: a task that ignores cancellation (or blocks in C code)
can only be stopped by ending the process that runs it, and an interpreter
crash in user code must not take the worker down. They come from the 'spawn'
context: a clean interpreter that shares no asyncio loop, Kafka sockets or
locks with the TaskManager (fork would copy all three).

Everything here runs on the TaskManager's event loop: the pipe and the process
sentinel are watched with ``add_reader``, so no thread is involved.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from worker import slotmsg
from worker.operators.api import KafkaEnv
from worker.slotchild import slot_main

log = logging.getLogger(__name__)

OnMessage = Callable[[int, slotmsg.FromSlot], None]
OnExit = Callable[[int, int | None, bool], None]  # index, exit code, had been ready


class SlotProcess:
    """One process running one task at a time: a lane of worker/slots.py (lane i <
    the slot count is slot i's own, pre-started; the others run tasks sharing a slot)."""

    def __init__(
        self,
        index: int,
        on_message: OnMessage,
        on_exit: OnExit,
        log_level: int = logging.INFO,
        kafka: KafkaEnv | None = None,
        state_url: str | None = None,
    ) -> None:
        self.index = index
        self._kafka = kafka
        self._state_url = state_url
        self._on_message = on_message
        self._on_exit = on_exit
        self._log_level = log_level
        self._ctx = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self.ready = False
        # Sent while the process was being replaced: delivered once it starts.
        self._pending: list[slotmsg.ToSlot] = []
        self._renewing = False
        self._released = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the process; messages sent before it is ready wait in the pipe."""
        loop = asyncio.get_running_loop()
        ours, theirs = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=slot_main,
            args=(theirs, self.index, self._log_level, self._kafka, self._state_url),
            name=f"jm-slot-{self.index}",
        )
        process.start()
        theirs.close()  # the child's end now lives in the child only
        self._process, self._conn, self.ready = process, ours, False
        self._released.clear()
        loop.add_reader(ours.fileno(), self._readable)
        loop.add_reader(process.sentinel, self._exited)
        pending, self._pending = self._pending, []
        for message in pending:
            self.send(message)

    def send(self, message: slotmsg.ToSlot) -> None:
        # Messages are a few hundred bytes: the socket buffer takes them at once.
        if self._conn is None or self._renewing:
            self._pending.append(message)
            return
        try:
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError):
            log.warning("slot %d: process gone, %r not delivered", self.index, message)

    def renew(self) -> None:
        """A fresh interpreter for the next task: the process (whose task has ended,
        after running a job's own code) is killed and replaced at once, without an
        exit report. Deferred to the next loop turn, as this is called while its
        messages are being read; what is sent meanwhile goes to the new process."""
        if self._process is None or self._renewing:
            return
        self._renewing = True
        asyncio.get_running_loop().call_soon(self._replace)

    def _replace(self) -> None:
        self._renewing = False
        process = self._process
        if process is None:  # it exited meanwhile: _exited starts the next one
            return
        log.info("slot %d: fresh process after a job's own code", self.index)
        self._release_quietly(process)
        self.start()

    def _release_quietly(self, process: BaseProcess) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(process.sentinel)
        if self._conn is not None:
            if not self._conn.closed:
                loop.remove_reader(self._conn.fileno())
                self._conn.close()
            self._conn = None
        process.kill()
        process.join(5.0)
        if process.exitcode is not None:
            process.close()
        self._process, self.ready = None, False

    def kill(self) -> None:
        """SIGKILL: the exit is noticed through the sentinel like any other."""
        if self._process is not None and self._process.is_alive():
            log.warning("slot %d: killing process %s", self.index, self._process.pid)
            self._process.kill()

    async def stop(self, timeout_s: float) -> None:
        """Ask the process to exit, kill it if it does not, and release everything.
        The exit callback is not called: the TaskManager is shutting down."""
        if self._process is None:
            return
        self._on_exit = lambda _index, _code, _ready: None
        self.send(slotmsg.Shutdown())
        # _exited (through the sentinel) releases the process when it ends.
        if not await self._released_within(timeout_s):
            self.kill()
            if not await self._released_within(5.0):
                self._release()

    async def _released_within(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._released.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _readable(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while conn.poll():
                message: slotmsg.FromSlot = conn.recv()
                if isinstance(message, slotmsg.Ready):
                    self.ready = True
                self._on_message(self.index, message)
        except (EOFError, OSError):
            # The child is gone; the sentinel reports the exit.
            asyncio.get_running_loop().remove_reader(conn.fileno())

    def _exited(self) -> None:
        process = self._process
        assert process is not None
        process.join()  # immediate: the sentinel says it has exited
        code = process.exitcode
        # Read what the child sent before dying (a final state) before
        # reporting the exit.
        if self._conn is not None and not self._conn.closed:
            self._readable()
        was_ready = self.ready
        self._release()
        self._on_exit(self.index, code, was_ready)

    def _release(self) -> None:
        loop = asyncio.get_running_loop()
        if self._conn is not None:
            if not self._conn.closed:
                loop.remove_reader(self._conn.fileno())
                self._conn.close()
            self._conn = None
        if self._process is not None:
            loop.remove_reader(self._process.sentinel)
            if self._process.exitcode is not None:
                self._process.close()
            self._process = None
        self.ready = False
        self._released.set()
