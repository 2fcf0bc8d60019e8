"""The domain core stays pure: no I/O, async, Kafka, Redis, Avro or telemetry."""

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import coordinator.domain

FORBIDDEN = ("asyncio", "aiokafka", "redis", "fastavro", "opentelemetry", "kafka")
# Sources of nondeterminism or I/O that must not even be imported directly.
FORBIDDEN_DIRECT = ("time", "datetime", "random", "secrets", "uuid", "os", "socket", "threading")
DOMAIN_DIR = Path(coordinator.domain.__file__).parent


def _modules() -> list[str]:
    return [f"coordinator.domain.{m.name}" for m in pkgutil.iter_modules([str(DOMAIN_DIR)])]


def test_importing_the_domain_loads_no_forbidden_module() -> None:
    imports = "; ".join(f"import {m}" for m in ["coordinator.domain", *_modules()])
    code = f"import sys, json; {imports}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN or m.startswith("schemas.telemetry")]
    assert bad == [], f"the domain pulls in {bad}"


def test_domain_sources_import_no_clock_randomness_or_io() -> None:
    for path in sorted(DOMAIN_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN + FORBIDDEN_DIRECT, f"{path.name} imports {name}"
                assert top in {"coordinator", "schemas"} or top in sys.stdlib_module_names
                if top == "schemas":
                    assert name in {"schemas.events", "schemas.validation", "schemas.limits"}, (
                        path.name,
                        name,
                    )
