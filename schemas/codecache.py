"""Generated source, compiled once per machine: code objects cached by the source's hash.

The codec's readers and converters, the snapshot decoders and the edge batch builders
are Python source generated per schema or class and run with ``exec``. Compiling that
source is most of what building them costs (about 4 ms a class, 0.17 s for the
journal's forty classes), and every process paid it again: each ``jm replay
--until``, each replica and slot process. ``run`` compiles a source once and keeps
the code object under ``$JM_CACHE_DIR/code`` (default
``$XDG_CACHE_HOME/kafka-jobmanager/code``, ``~/.cache`` without it), as ``__pycache__``
keeps a module's: the file's name is a hash of the source and of the interpreter's
bytecode version, so a changed generator or another Python never meets an old file,
and a file that does not load is compiled again and replaced. ``JM_CODE_CACHE=off``
turns the cache off (each process compiles, as before). Like ``__pycache__``, the
directory is trusted: whoever can write it can run code as the user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import sys
import types
from pathlib import Path
from typing import Any

#: Bytecode of this interpreter: a cached code object is only read by the same.
_TAG = f"{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}"


def directory() -> Path | None:
    """Where code objects are cached; None when the cache is off."""
    if os.environ.get("JM_CODE_CACHE", "").lower() in ("off", "0", "false", "no"):
        return None
    # The rule of compose/local/launcher.py's cache_dir (the Kafka jars' directory): that
    # script runs before this package is installed, so it keeps its own copy.
    base = os.environ.get("JM_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        try:
            base = str((Path(xdg) if xdg else Path.home() / ".cache") / "kafka-jobmanager")
        except (KeyError, RuntimeError):  # no home to keep it in
            return None
    return Path(base) / "code"


def compiled(source: str, filename: str = "<string>") -> types.CodeType:
    """``compile(source, filename, "exec")``, from the cache when it holds it."""
    where = directory()
    if where is None:
        return compile(source, filename, "exec")
    digest = hashlib.sha256(f"{_TAG}\0{filename}\0{source}".encode()).hexdigest()[:40]
    path = where / f"{digest}.code"
    try:
        code = marshal.loads(path.read_bytes())
        if isinstance(code, types.CodeType):
            return code
    except (OSError, ValueError, EOFError, TypeError):
        pass  # not there yet, or unreadable: compiled and written again
    code = compile(source, filename, "exec")
    try:
        where.mkdir(parents=True, exist_ok=True)
        partial = where / f".{digest}.{os.getpid()}.tmp"
        partial.write_bytes(marshal.dumps(code))
        os.replace(partial, path)  # readers see the whole file or none
    except OSError:
        pass  # a read-only home: the code is still right, only not kept
    return code


def run(source: str, namespace: dict[str, Any], filename: str = "<string>") -> None:
    """``exec(source, namespace)`` with the source compiled through the cache."""
    exec(compiled(source, filename), namespace)
