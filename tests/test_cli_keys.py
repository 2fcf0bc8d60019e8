"""``jm keys`` and the launcher's key file: made once, owner-only, loadable, rotatable."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from schemas.signing import KeyRing
from tests.conftest import REPO
from tests.test_compose_static import load_launcher


def jm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_generate_add_retire_is_a_rotation_and_never_prints_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    made = jm("keys", "generate", str(path))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = KeyRing.load(path)
    assert first.roles() == ("client", "worker", "command", "journal")
    assert jm("keys", "generate", str(path)).returncode == 1  # never overwritten by accident
    assert jm("keys", "generate", str(path), "--if-missing").returncode == 0
    assert KeyRing.load(path).keys == first.keys

    assert jm("keys", "add", str(path), "--role", "client", "--id", "k2").returncode == 0
    assert [k.id for k in KeyRing.load(path).keys["client"]] == ["k1", "k2"]  # k1 still signs
    out = jm("keys", "add", str(path), "--role", "client", "--id", "k3", "--sign")
    assert out.stdout.strip() == "client: k3, k1, k2 (the first signs)"
    assert jm("keys", "retire", str(path), "--role", "client", "--id", "k1").returncode == 0
    assert [k.id for k in KeyRing.load(path).keys["client"]] == ["k3", "k2"]
    listed = jm("keys", "list", str(path))
    worker = tmp_path / "worker.json"
    roles = ("worker", "command")
    assert jm("keys", "subset", str(path), str(worker), "--roles", *roles).returncode == 0
    assert json.loads(worker.read_text()).keys() == set(roles)
    assert KeyRing.load(worker, roles).keys == {r: KeyRing.load(path).keys[r] for r in roles}
    secrets = [k["secret"] for keys in json.loads(path.read_text()).values() for k in keys]
    for shown in (made, out, listed):
        assert not any(s in shown.stdout + shown.stderr for s in secrets)


def test_a_coordinator_without_keys_refuses_to_start_and_says_how() -> None:
    env = {k: v for k, v in os.environ.items() if k != "JM_SIGNING_KEYS_FILE"}
    done = subprocess.run(
        [sys.executable, "-m", "coordinator", "coordinator", "--id", "nokeys"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "no signing keys" in done.stderr and "--insecure-unsigned" in done.stderr
    worker = subprocess.run([sys.executable, "-m", "worker"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert worker.returncode == 2 and "no signing keys" in worker.stderr, worker.stderr


def test_the_launchers_key_file_is_made_once_in_the_instance_and_loads(tmp_path: Path) -> None:
    launcher = load_launcher()
    path = launcher.signing_keys(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert launcher.signing_keys(tmp_path) == path
    ring = KeyRing.load(path)
    assert ring.roles() == ("client", "worker", "command", "journal")
    assert KeyRing.load(path).keys == ring.keys  # not regenerated
