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

import builtins
import hashlib
import importlib.util
import marshal
import os
import sys
import types
from collections.abc import Callable
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
    _write(path, marshal.dumps(code))
    return code


def run(source: str, namespace: dict[str, Any], filename: str = "<string>") -> None:
    """``exec(source, namespace)`` with the source compiled through the cache."""
    exec(compiled(source, filename), namespace)


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, path)  # readers see the whole file or none
    except OSError:
        pass  # a read-only home: the code is still right, only not kept


def dataclass_functions(module: str) -> Callable[[], None]:
    """Compile the functions ``dataclasses`` generates while `module` defines its classes
    (each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ...) through one
    bundle file of the cache, until the returned function is called.

    ``dataclasses`` writes those functions as source and runs it with ``exec``: for the
    57 frozen classes of ``schemas.events`` that is 342 compilations, 40 of the 50 ms
    its import takes, paid by every process. Meanwhile ``dataclasses`` sees an ``exec``
    of its own that takes the code objects from the bundle (keyed by a hash of the
    source; the file's name carries the interpreter's bytecode version) and compiles
    what is not there. The returned function restores the builtin and writes the bundle
    when it did not hold exactly what was used. With the cache off it does nothing."""
    where = directory()
    if where is None:
        return lambda: None
    import dataclasses

    path = where / f"dataclasses-{module}-{_TAG}.code"
    bundle: dict[bytes, types.CodeType] = {}
    try:
        loaded = marshal.loads(path.read_bytes())
        if isinstance(loaded, dict):
            bundle = loaded
    except (OSError, ValueError, EOFError, TypeError):
        pass  # not there yet, or unreadable: compiled and written again
    used: dict[bytes, types.CodeType] = {}

    # dataclasses always calls exec(source, globals, namespace): nothing else is taken.
    def cached_exec(source: Any, globals: dict[str, Any], locals: dict[str, Any]) -> None:
        if isinstance(source, str):
            key = hashlib.sha256(source.encode()).digest()[:20]
            code = bundle.get(key)
            if not isinstance(code, types.CodeType):
                code = compile(source, "<string>", "exec")
            used[key] = source = code
        builtins.exec(source, globals, locals)

    setattr(dataclasses, "exec", cached_exec)  # noqa: B010 - a module global, not an attribute

    def finish() -> None:
        if getattr(dataclasses, "exec", None) is cached_exec:
            delattr(dataclasses, "exec")
        if used.keys() != bundle.keys():
            _write(path, marshal.dumps(used))

    return finish
