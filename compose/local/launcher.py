#!/usr/bin/env python3
"""Local Apache Kafka (KRaft, single node) and Redis without Docker.

Standard library only, so it runs before the project's virtualenv exists.

    python3 compose/local/launcher.py up      # start (idempotent), print addresses
    python3 compose/local/launcher.py down    # stop cleanly (idempotent)
    python3 compose/local/launcher.py status | env | libs | resolve | ensure BIN...

Kafka's jars come from Maven Central (compose/local/pom.xml) into a cache
outside the repository ($JM_CACHE_DIR, default ~/.cache/kafka-jobmanager), so
later runs start without downloading. Each *instance* (--name) has its own
directory with config, data and logs (default .local/<name>/ in the repo), and
its own ports, so two test runs on one machine never collide: tests use
`--ports auto`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
POM = HERE / "pom.xml"

DEFAULT_KAFKA_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_REDIS_PORT = 6379
DEFAULT_SASL_PORT = 9094
#: The principals `up --secure` creates (SASL/PLAIN and SCRAM-SHA-256, one password
#: each, in <home>/kafka/users.json). admin is the super user (ACLs, topic set-up).
SECURE_USERS = ("admin", "coordinator", "worker", "client", "reader")
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
READY_LINE = "Kafka Server started"

# Debian package that provides each binary the launcher may need.
APT_PACKAGES = {
    "redis-server": "redis-server",
    "kcat": "kcat",
    "chromium": "chromium",  # the dashboard test's headless browser
    "chromedriver": "chromium-driver",  # Selenium drives chromium through it
    "mvn": "maven",
    "java": "openjdk-17-jre-headless",
}


class LauncherError(Exception):
    """Anything that stops the local stack from starting; the message says why."""


# --------------------------------------------------------------------- paths


def cache_dir() -> Path:
    # schemas/codecache.py keeps the same rule (this script runs before the install).
    env = os.environ.get("JM_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "kafka-jobmanager"


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise LauncherError(f"no <kafka.version> in {POM}")
    return match.group(1)


def libs_dir() -> Path:
    return cache_dir() / f"kafka-{kafka_version()}" / "libs"


def home_dir(args: argparse.Namespace) -> Path:
    root = Path(args.home or os.environ.get("JM_LOCAL_HOME") or REPO / ".local")
    return root / str(args.name)


# ------------------------------------------------------------ prerequisites


def ensure_binary(name: str) -> str:
    """Return the path of `name`, installing its Debian package when we may."""
    found = shutil.which(name)
    if found:
        return found
    package = APT_PACKAGES.get(name, name)
    can_apt = shutil.which("apt-get") is not None and os.geteuid() == 0
    if not can_apt:
        raise LauncherError(
            f"'{name}' is not on PATH. Install it (Debian/Ubuntu: sudo apt-get install "
            f"{package}; macOS: brew install {package}) or use compose/docker-compose.yml."
        )
    print(f"[launcher] installing {package} from Debian's packages", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = run_apt(cmd, env)
        if done.returncode != 0:
            raise LauncherError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    found = shutil.which(name)
    if not found:
        raise LauncherError(f"installed {package} but '{name}' is still not on PATH")
    return found


APT_LOCK_WAIT_S = 600


def apt_locked(output: str) -> bool:
    """apt-get's complaint when another process (unattended-upgrades, a second
    `make`) holds the dpkg or apt lock."""
    return "Could not get lock" in output or "Unable to acquire the dpkg frontend lock" in output


def run_apt(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run an apt-get command, waiting (with a message) while another process holds the lock."""
    deadline = time.monotonic() + APT_LOCK_WAIT_S
    said = False
    while True:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode == 0 or not apt_locked(done.stdout + done.stderr):
            return done
        if time.monotonic() > deadline:
            return done
        if not said:
            print(f"[launcher] another process holds the apt lock; waiting up to "
                  f"{APT_LOCK_WAIT_S // 60} min for it", file=sys.stderr)  # fmt: skip
            said = True
        time.sleep(2)


def resolve_jars() -> Path:
    """Copy the broker, tools and logging jars from Maven Central into the cache (once)."""
    libs = libs_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs resolving at once wait for each other
        if marker.exists():
            return libs
        mvn = ensure_binary("mvn")
        ensure_binary("java")
        staging = libs.parent / f"libs.tmp.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        print(f"[launcher] resolving Kafka {kafka_version()} from Maven Central", file=sys.stderr)
        started = time.monotonic()
        cmd = [
            mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            raise LauncherError(f"mvn could not resolve Kafka:\n{done.stdout}{done.stderr}")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(f"resolved in {time.monotonic() - started:.1f}s\n")
        print(f"[launcher] jars in {libs} ({time.monotonic() - started:.1f}s)", file=sys.stderr)
    return libs


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid_file: Path, needle: str) -> int | None:
    """The pid in `pid_file` if that process is alive and its command line has `needle`."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if needle in cmdline else None


def stop_process(pid_file: Path, needle: str, grace: float = 30.0) -> bool:
    pid = pid_alive(pid_file, needle)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid_file, needle):
        time.sleep(0.1)
    if pid_alive(pid_file, needle):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    pid_file.unlink(missing_ok=True)
    return True


def spawn(cmd: list[str], log: Path, pid_file: Path) -> subprocess.Popen[bytes]:
    """Start a server in its own session so it outlives this launcher."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=log.parent,
        )  # fmt: skip
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -------------------------------------------------------------------- kafka


@dataclass
class Instance:
    name: str
    home: str
    kafka_port: int
    controller_port: int
    redis_port: int
    #: SASL_PLAINTEXT listener with the KRaft authorizer (`up --secure`); 0: none
    sasl_port: int = 0
    #: `up --brokers 3`: the other nodes' (kafka, controller) ports; node 1 uses the above
    more_nodes: list[list[int]] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port, _ in self.nodes())

    @property
    def brokers(self) -> int:
        return 1 + len(self.more_nodes)

    def nodes(self) -> list[tuple[int, int]]:
        """(kafka port, controller port) of each node, node id 1 first."""
        return [(self.kafka_port, self.controller_port), *((k, c) for k, c in self.more_nodes)]

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"


def secure_properties(inst: Instance, users: dict[str, str]) -> dict[str, str]:
    """A SASL_PLAINTEXT listener (PLAIN and SCRAM-SHA-256) on its own port, and the KRaft
    authorizer. The plain listener (and the controller's) stay open: their principal,
    ANONYMOUS, is a super user, so the rest of the suite runs on them as before."""
    plain_users = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return {
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{inst.kafka_port},CONTROLLER://127.0.0.1:"
            f"{inst.controller_port},SASL_PLAINTEXT://127.0.0.1:{inst.sasl_port}"
        ),
        "advertised.listeners": (
            f"PLAINTEXT://127.0.0.1:{inst.kafka_port},SASL_PLAINTEXT://127.0.0.1:{inst.sasl_port}"
        ),
        "listener.security.protocol.map": (
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
        ),
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        ),
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:ANONYMOUS;User:admin",
        "allow.everyone.if.no.acl.found": "false",
    }


def secure_users(kdir: Path) -> dict[str, str]:
    """The principals' passwords, made once per instance (users.json, mode 0600)."""
    path = kdir / "users.json"
    if path.exists():
        users: dict[str, str] = json.loads(path.read_text())
        return users
    users = {name: base64.urlsafe_b64encode(os.urandom(18)).decode() for name in SECURE_USERS}
    kdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(users, f, indent=2)
    return users


def server_properties(
    inst: Instance, data: Path, users: dict[str, str] | None = None, node: int = 1
) -> str:
    kafka_port, controller_port = inst.nodes()[node - 1]
    voters = ",".join(f"{n}@127.0.0.1:{c}" for n, (_, c) in enumerate(inst.nodes(), start=1))
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        # Topics are created deliberately, with the catalog's configuration.
        "auto.create.topics.enable": "false",
        # One broker: every internal topic must have replication factor 1, or
        # transactions and offset commits hang waiting for replicas that never come.
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        "num.io.threads": "4",
        "num.network.threads": "2",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    if inst.brokers >= 3:
        # Three brokers: three copies of everything, two in sync to accept a write, so
        # one broker may be down (`up --brokers 3`, the broker drill).
        settings.update({
            "default.replication.factor": "3", "min.insync.replicas": "2",
            "offsets.topic.replication.factor": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
        })  # fmt: skip
    if inst.sasl_port:
        settings.update(secure_properties(inst, users or {}))
    return "".join(f"{key}={value}\n" for key, value in settings.items())


LOG4J = """\
log4j.rootLogger=INFO, server
log4j.appender.server=org.apache.log4j.RollingFileAppender
log4j.appender.server.File={logs}/server.log
log4j.appender.server.MaxFileSize=20MB
log4j.appender.server.MaxBackupIndex=3
log4j.appender.server.layout=org.apache.log4j.PatternLayout
log4j.appender.server.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
"""


def java_cmd(
    libs: Path, home: Path, main: str, *args: str, node_dir: Path | None = None
) -> list[str]:
    """`node_dir`: the node's directory (log4j config, logs); default the first's."""
    kdir = node_dir or home / "kafka"
    java = ensure_binary("java")
    # Kafka's own default heap (kafka-server-start.sh): with 256 MB to start, the broker's
    # old generation sat above G1's 45% mark under a running job, so every young
    # collection began a concurrent cycle (every 6-7 s, marking threads on one of the
    # two cores, a 17 ms remark): 100-150 ms latency spikes of the data plane
    # (docs/benchmarks.md, "Data plane latency and the broker's heap").
    heap = os.environ.get("JM_KAFKA_HEAP", "-Xms1g -Xmx1g").split()
    return [
        java, *heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{kdir / 'log4j.properties'}",
        f"-Dkafka.logs.dir={kdir / 'logs'}",
        "-cp", f"{libs}/*", main, *args,
    ]  # fmt: skip


def kafka_cluster_id() -> str:
    """A KRaft cluster id in Kafka's own format (``Uuid.randomUuid()``): 16 random bytes,
    URL-safe base64 without padding, never starting with '-' (which command-line
    parsers take for an option), and never the reserved zero or metadata-topic ids."""
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not text.startswith("-") and raw not in (bytes(16), bytes(15) + b"\x01"):
            return text


def node_dir(home: Path, node: int) -> Path:
    """Node 1's directory is kafka/ (as with one broker), the others' kafka-2/, kafka-3/."""
    return home / ("kafka" if node == 1 else f"kafka-{node}")


def kraft_cluster_id(home: Path) -> str:
    """The instance's KRaft cluster id, the same for every node (made once)."""
    path = home / "kraft-cluster-id"
    if not path.exists():
        path.write_text(kafka_cluster_id())
    return path.read_text().strip()


def start_kafka(inst: Instance, timeout: float) -> None:
    """Every node of the instance; they start together (a quorum of three needs two)."""
    starting = [start_node(inst, node) for node in range(1, inst.brokers + 1)]
    for wait in starting:
        if wait is not None:
            wait(timeout)


def start_node(inst: Instance, node: int) -> Callable[[float], None] | None:
    """Start node `node` of `inst`; returns what waits for it to be ready (None: it runs)."""
    home = Path(inst.home)
    kdir = node_dir(home, node)
    kafka_port = inst.nodes()[node - 1][0]
    pid_file = kdir / "kafka.pid"
    if pid_alive(pid_file, "kafka.Kafka") and port_open(kafka_port):
        return None
    libs = resolve_jars()
    data, logs = kdir / "data", kdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    users = secure_users(kdir) if inst.sasl_port else {}
    (kdir / "server.properties").write_text(server_properties(inst, data, users, node))
    (kdir / "log4j.properties").write_text(LOG4J.format(logs=logs))
    if not (data / "meta.properties").exists():
        cluster = kraft_cluster_id(home) if inst.brokers > 1 else kafka_cluster_id()
        # SCRAM credentials live in the KRaft metadata: written when it is formatted.
        scram = [f"--add-scram=SCRAM-SHA-256=[name={n},password={p}]" for n, p in users.items()]
        fmt = java_cmd(libs, home, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster}",
                       "-c", str(kdir / "server.properties"), "--ignore-formatted",
                       *scram)  # fmt: skip
        done = subprocess.run(fmt, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LauncherError(f"formatting KRaft storage failed:\n{done.stdout}{done.stderr}")
    if port_open(kafka_port):
        raise LauncherError(f"port {kafka_port} is taken by another process")
    (logs / "server.log").unlink(missing_ok=True)
    stdout = kdir / "stdout.log"
    cmd = java_cmd(libs, home, "kafka.Kafka", str(kdir / "server.properties"), node_dir=kdir)
    proc = spawn(cmd, stdout, pid_file)

    def wait(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LauncherError(
                    f"Kafka exited with {proc.returncode}; {stdout}:\n{tail(stdout)}\n"
                    f"{logs / 'server.log'}:\n{tail(logs / 'server.log')}"
                )
            log = logs / "server.log"
            ready = log.exists() and READY_LINE in log.read_text(errors="replace")
            if ready and port_open(kafka_port):
                return
            time.sleep(0.2)
        stop_process(pid_file, "kafka.Kafka")
        raise LauncherError(f"Kafka not ready after {timeout:.0f}s; {logs / 'server.log'}:\n"
                            f"{tail(logs / 'server.log')}")  # fmt: skip

    return wait


# -------------------------------------------------------------------- redis


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(inst: Instance, timeout: float) -> None:
    rdir = Path(inst.home) / "redis"
    pid_file = rdir / "redis.pid"
    if pid_alive(pid_file, "redis-server") and redis_ping(inst.redis_port):
        return
    binary = ensure_binary("redis-server")
    rdir.mkdir(parents=True, exist_ok=True)
    if port_open(inst.redis_port):
        raise LauncherError(f"port {inst.redis_port} is taken by another process")
    cmd = [
        binary, "--bind", "127.0.0.1", "--port", str(inst.redis_port), "--dir", str(rdir),
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
    ]  # fmt: skip
    log = rdir / "redis.log"
    proc = spawn(cmd, log, pid_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LauncherError(f"redis-server exited with {proc.returncode}:\n{tail(log)}")
        if redis_ping(inst.redis_port):
            return
        time.sleep(0.05)
    raise LauncherError(f"redis-server not ready after {timeout:.0f}s:\n{tail(log)}")


# ----------------------------------------------------------------- commands


def load_instance(args: argparse.Namespace) -> Instance | None:
    path = home_dir(args) / "instance.json"
    if not path.exists():
        return None
    return Instance(**json.loads(path.read_text()))


def ports_asked(args: argparse.Namespace) -> dict[str, bool]:
    """The ports the user asked for explicitly (flag or environment), by Instance field."""
    fields = {
        "kafka_port": (args.kafka_port, "JM_KAFKA_PORT"),
        "controller_port": (args.controller_port, "JM_KAFKA_CONTROLLER_PORT"),
        "redis_port": (args.redis_port, "JM_REDIS_PORT"),
    }
    return {k: True for k, (flag, env) in fields.items() if flag or os.environ.get(env)}


def instance_running(home: Path) -> bool:
    kafka = any(pid_alive(d / "kafka.pid", "kafka.Kafka") for d in home.glob("kafka*"))
    redis = pid_alive(home / "redis" / "redis.pid", "redis-server")
    return bool(kafka or redis)


def port_arg(value: str | None, env: str, default: int, auto: bool) -> int:
    if value:
        return int(value)
    if os.environ.get(env):
        return int(os.environ[env])
    return free_port() if auto else default


SIGNING_ROLES = ("client", "worker", "command", "journal")  # schemas/signing.py ROLES


def signing_keys(home: Path) -> Path:
    """The instance's key file of signed records, made once (one random key per role,
    the format of `jm keys generate`; standard library only, like the rest here)."""
    path = home / "signing-keys.json"
    if not path.exists():
        keys = {r: [{"id": "k1", "secret": base64.b64encode(os.urandom(32)).decode()}]
                for r in SIGNING_ROLES}  # fmt: skip
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(keys, indent=2) + "\n")
    return path


def node_port(auto: bool, kind: int, node: int) -> int:
    """Node `node`'s Kafka (kind 1) or controller (kind 2) port: free ports with --ports
    auto, else next to the defaults (9192/9193 for node 2, 9292/9293 for node 3)."""
    if auto:
        return free_port()
    base = DEFAULT_KAFKA_PORT if kind == 1 else DEFAULT_CONTROLLER_PORT
    return base + 100 * (node - 1)


def cmd_up(args: argparse.Namespace) -> int:
    home = home_dir(args)
    inst = load_instance(args)
    auto = args.ports == "auto"
    wanted = Instance(
        name=args.name,
        home=str(home),
        kafka_port=port_arg(args.kafka_port, "JM_KAFKA_PORT", DEFAULT_KAFKA_PORT, auto),
        controller_port=port_arg(
            args.controller_port, "JM_KAFKA_CONTROLLER_PORT", DEFAULT_CONTROLLER_PORT, auto
        ),
        redis_port=port_arg(args.redis_port, "JM_REDIS_PORT", DEFAULT_REDIS_PORT, auto),
        sasl_port=(
            port_arg(args.sasl_port, "JM_KAFKA_SASL_PORT", DEFAULT_SASL_PORT, auto)
            if args.secure
            else 0
        ),
        more_nodes=[
            [node_port(auto, 1, n), node_port(auto, 2, n)] for n in range(2, args.brokers + 1)
        ],
    )
    if args.secure and args.brokers > 1:
        raise LauncherError("--secure runs on one broker only")
    if inst is not None and not auto:
        if inst.brokers != args.brokers and instance_running(home):
            raise LauncherError(
                f"instance '{args.name}' runs {inst.brokers} broker(s), not {args.brokers}; "
                f"stop and remove it first (`launcher.py --name {args.name} down --purge`)"
            )
        asked = ports_asked(args)
        changed = {k: v for k, v in asked.items() if getattr(inst, k) != getattr(wanted, k)}
        if changed and instance_running(home):
            moves = ", ".join(f"{k} {getattr(inst, k)} -> {getattr(wanted, k)}" for k in changed)
            raise LauncherError(
                f"instance '{args.name}' runs on other ports than asked ({moves}); "
                f"stop it first (`make down`) or ask for its ports"
            )
        if bool(inst.sasl_port) != bool(args.secure) and (home / "kafka" / "data").exists():
            raise LauncherError(
                f"instance '{args.name}' was made {'with' if inst.sasl_port else 'without'} "
                f"--secure; remove it first (`launcher.py --name {args.name} down --purge`) "
                f"or use another --name"
            )
        if not changed and inst.brokers == args.brokers:
            wanted = inst  # the instance keeps the ports it has
    inst = wanted
    home.mkdir(parents=True, exist_ok=True)
    (home / "instance.json").write_text(json.dumps(asdict(inst), indent=2) + "\n")
    keys = signing_keys(home)
    started = time.monotonic()
    if not args.no_redis:
        start_redis(inst, args.timeout)
    start_kafka(inst, args.timeout)
    elapsed = time.monotonic() - started
    secure = {}
    if inst.sasl_port:
        secure = {"sasl_bootstrap": f"127.0.0.1:{inst.sasl_port}",
                  "users_file": str(home / "kafka" / "users.json")}  # fmt: skip
    if args.json:
        print(json.dumps({"bootstrap": inst.bootstrap, "redis_url": inst.redis_url,
                          "brokers": inst.brokers,
                          "home": inst.home, "seconds": round(elapsed, 2),
                          "signing_keys": str(keys), **secure}))  # fmt: skip
    else:
        print(f"Kafka  {inst.bootstrap}   (logs: {home / 'kafka' / 'logs' / 'server.log'})")
        if secure:
            print(f"Kafka  {secure['sasl_bootstrap']}   SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256) "
                  f"with ACLs; users {', '.join(SECURE_USERS)}, passwords in "
                  f"{secure['users_file']}; admin is the super user")  # fmt: skip
        if not args.no_redis:
            print(f"Redis  {inst.redis_url}   (log: {home / 'redis' / 'redis.log'})")
        print(f"signing keys {keys}")
        print(f"ready in {elapsed:.1f}s; `make down` stops them")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    home = home_dir(args)
    stopped = [stop_process(d / "kafka.pid", "kafka.Kafka") for d in sorted(home.glob("kafka*"))]
    kafka = any(stopped)
    redis = stop_process(home / "redis" / "redis.pid", "redis-server")
    print(f"Kafka {'stopped' if kafka else 'was not running'}; "
          f"Redis {'stopped' if redis else 'was not running'}")  # fmt: skip
    if args.purge:
        shutil.rmtree(home, ignore_errors=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    inst = load_instance(args)
    if inst is None:
        print(f"no local instance '{args.name}'")
        return 1
    home = Path(inst.home)
    kafka = pid_alive(home / "kafka" / "kafka.pid", "kafka.Kafka") is not None
    redis = pid_alive(home / "redis" / "redis.pid", "redis-server") is not None
    print(f"Kafka  {inst.bootstrap}  {'running' if kafka else 'stopped'}")
    print(f"Redis  {inst.redis_url}  {'running' if redis else 'stopped'}")
    return 0 if kafka and redis else 1


def cmd_env(args: argparse.Namespace) -> int:
    inst = load_instance(args)
    if inst is None:
        raise LauncherError(f"no local instance '{args.name}': run `make up` first")
    print(f"export KAFKA_BOOTSTRAP_SERVERS={inst.bootstrap}")
    print(f"export REDIS_URL={inst.redis_url}")
    print(f"export JM_SIGNING_KEYS_FILE={signing_keys(Path(inst.home))}")
    if inst.brokers > 1:  # the catalog's topics: schemas/catalog.py replication_for
        print(f"export JM_REPLICATION_FACTOR={min(3, inst.brokers)}")
    if inst.sasl_port:
        print(f"# SASL listener: 127.0.0.1:{inst.sasl_port}; passwords in "
              f"{Path(inst.home) / 'kafka' / 'users.json'} (docs/security.md)")  # fmt: skip
    return 0


def cmd_libs(_: argparse.Namespace) -> int:
    print(resolve_jars())
    return 0


def cmd_ensure(args: argparse.Namespace) -> int:
    for name in args.binaries:
        print(f"{name}: {ensure_binary(name)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--name", default=os.environ.get("JM_LOCAL_NAME", "default"),
                   help="instance name: its own directory and ports")  # fmt: skip
    p.add_argument("--home", help="root of instance directories (default .local/ in the repo)")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Kafka and Redis (idempotent)")
    up.add_argument("--ports", choices=["default", "auto"],
                    default=os.environ.get("JM_PORTS", "default"),
                    help="auto: free ports (for tests; default $JM_PORTS)")  # fmt: skip
    up.add_argument("--kafka-port")
    up.add_argument("--controller-port")
    up.add_argument("--redis-port")
    up.add_argument("--no-redis", action="store_true")
    up.add_argument("--brokers", type=int, choices=[1, 3], default=1,
                    help="KRaft nodes (default 1); 3: replication factor 3, "
                    "min.insync.replicas 2 (`make up BROKERS=3`)")  # fmt: skip
    up.add_argument("--secure", action="store_true",
                    help="also a SASL listener (PLAIN, SCRAM), KRaft authorizer")  # fmt: skip
    up.add_argument("--sasl-port")
    up.add_argument("--timeout", type=float, default=120.0)
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop Kafka and Redis (idempotent)")
    down.add_argument("--purge", action="store_true", help="also delete data and logs")
    down.set_defaults(func=cmd_down)
    sub.add_parser("status").set_defaults(func=cmd_status)
    sub.add_parser("env", help="print shell exports for the instance").set_defaults(func=cmd_env)
    sub.add_parser("libs", help="resolve the jars, print their directory").set_defaults(
        func=cmd_libs
    )
    sub.add_parser("resolve", help="same as libs").set_defaults(func=cmd_libs)
    ensure = sub.add_parser("ensure", help="install binaries from Debian's packages if missing")
    ensure.add_argument("binaries", nargs="+")
    ensure.set_defaults(func=cmd_ensure)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LauncherError as err:
        print(f"launcher: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
