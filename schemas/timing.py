"""The timing rules between coordinators and workers, and the defaults that keep them.

Coordinator and worker each configure their own timeouts, but safety needs
them to agree (docs/ha.md, "Timing rules"). With

- ``L`` the lease ttl (``jm coordinator --lease-ttl-ms``) and ``T`` the time a
  takeover takes beyond it (``TAKEOVER_ALLOWANCE_MS``),
- ``i`` the leader's keepalive interval,
- ``C`` the coordinator's heartbeat timeout (``--heartbeat-timeout-ms``: a worker
  silent that long is declared lost and its tasks are redeployed elsewhere),
- ``W`` the worker's leader timeout (``jm worker --heartbeat-timeout``: a worker
  that hears no leader that long stops every task),
- ``K`` the worker's cancel timeout (``--cancel-timeout``: a task that ignores a
  cancel that long is killed), and ``h`` its heartbeat interval,

the rules are:

1. ``W > L + T``: a worker keeps its tasks through a leader failover.
2. ``W > 2 i``: a worker does not stop its tasks for one late keepalive.
3. ``W + K + h < C``: a worker cut off from the leader has stopped (or killed)
   its tasks before the coordinator declares it lost and runs them elsewhere,
   so two attempts of one subtask never run at once.

A coordinator checks at start what it knows (``coordinator_problems``: room
for a ``W`` between rules 1 and 3). It tells workers ``C`` and ``i`` in every
``LeaderKeepalive``; a worker checks rules 2 and 3 when it hears them
(``worker_problems``) and refuses to run against a leader they break. Rule 1
needs ``L``, which no worker learns: it is documented, not checked.

Standard library only.
"""

from __future__ import annotations

from typing import Final

#: a takeover after the lease expired: fence, read the journal tail, elect (measured
#: at most about 0.5 s beyond the ttl, docs/ha.md).
TAKEOVER_ALLOWANCE_MS: Final = 1_000

# Defaults, with margin for a busy 2-core host. Keepalive gaps of 7 s were seen when
# the leader's loop sent them; from their own thread the gaps stayed at or under
# 1.6 s with three CPU hogs on 2 cores (docs/ha.md), so W = 6 s rides out gaps of
# 5 s, and C = 12 s keeps 3 s between W + K + h and the moment a worker is lost.
DEFAULT_LEASE_TTL_MS: Final = 3_000
DEFAULT_KEEPALIVE_INTERVAL_MS: Final = 1_000
DEFAULT_COORDINATOR_HEARTBEAT_TIMEOUT_MS: Final = 12_000
DEFAULT_WORKER_HEARTBEAT_INTERVAL_S: Final = 1.0
DEFAULT_WORKER_LEADER_TIMEOUT_S: Final = 6.0
DEFAULT_WORKER_CANCEL_TIMEOUT_S: Final = 2.0


def _s(ms: float) -> str:
    return f"{ms / 1000:g} s"


def coordinator_problems(
    *, heartbeat_timeout_ms: int, keepalive_interval_ms: int, lease_ttl_ms: int
) -> list[str]:
    """Why a coordinator's timeouts leave no worker a safe leader timeout (empty: none)."""
    floor = lease_ttl_ms + TAKEOVER_ALLOWANCE_MS + keepalive_interval_ms
    if heartbeat_timeout_ms > floor:
        return []
    return [
        f"--heartbeat-timeout-ms {heartbeat_timeout_ms} leaves workers no safe leader "
        f"timeout: it must be above --lease-ttl-ms {lease_ttl_ms} + takeover "
        f"{TAKEOVER_ALLOWANCE_MS} + keepalive interval {keepalive_interval_ms} = {floor} "
        f"plus the workers' cancel timeout (docs/ha.md, timing rules); raise "
        f"--heartbeat-timeout-ms (default {DEFAULT_COORDINATOR_HEARTBEAT_TIMEOUT_MS}) or "
        f"lower --lease-ttl-ms"
    ]


def worker_problems(
    *,
    leader_timeout_s: float,
    cancel_timeout_s: float,
    heartbeat_interval_s: float,
    coordinator_heartbeat_timeout_ms: int,
    keepalive_interval_ms: int,
) -> list[str]:
    """Why a worker's timeouts are unsafe against a leader's (empty: they are safe)."""
    problems = []
    w_ms = leader_timeout_s * 1000
    if w_ms <= 2 * keepalive_interval_ms:
        problems.append(
            f"jm worker --heartbeat-timeout {leader_timeout_s:g} (s without hearing a leader "
            f"before stopping every task) must be above twice the leader's keepalive interval "
            f"{_s(keepalive_interval_ms)}: start the worker with --heartbeat-timeout above "
            f"{_s(2 * keepalive_interval_ms)}"
        )
    used_ms = (leader_timeout_s + cancel_timeout_s + heartbeat_interval_s) * 1000
    if used_ms >= coordinator_heartbeat_timeout_ms:
        room_s = coordinator_heartbeat_timeout_ms / 1000 - cancel_timeout_s - heartbeat_interval_s
        problems.append(
            f"jm worker --heartbeat-timeout {leader_timeout_s:g} + --cancel-timeout "
            f"{cancel_timeout_s:g} + --heartbeat-interval {heartbeat_interval_s:g} = "
            f"{_s(used_ms)} is not below the coordinator's heartbeat timeout "
            f"{_s(coordinator_heartbeat_timeout_ms)}: cut off from the leader, this worker "
            f"could still run its tasks when they are redeployed elsewhere. Start the worker "
            f"with --heartbeat-timeout below {room_s:g} (or a shorter --cancel-timeout), or "
            f"the coordinators with --heartbeat-timeout-ms above {used_ms:.0f}"
        )
    return problems
