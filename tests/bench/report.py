"""docs/benchmarks.md, rendered from one run's results (see tests/bench/run.py)."""

from __future__ import annotations

from typing import Any

Results = dict[str, Any]


def _n(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def _codec(rows: list[Results]) -> str:
    out = ["| what | target | measured | notes |", "|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['op']} `TaskStateChanged` (typed API, headers included) | >= 200,000/s | "
            f"**{_n(r['per_second'])}/s** ({r['us_per_op']} us/op) | value {r['value_bytes']} "
            f"bytes, {r['headers']} headers; best of 3 rounds |"
        )
    return "\n".join(out)


def _signing(rows: list[Results]) -> str:
    out = ["| event | value bytes | operation | measured |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['event']}` | {r['value_bytes']} | {r['op']} | "
                   f"**{_n(r['per_second'])}/s** ({r['us_per_op']} us/op) |")  # fmt: skip
    return "\n".join(out)


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _replay(r: Results) -> str:
    eq = "equal" if r["digest_equal"] else "**MISMATCH**"
    mix = ", ".join(f"{k} {_n(v)}" for k, v in r["event_mix"].items())
    rows = [
        _row("what", "target", "measured", "notes"),
        _row("---", "---", "---", "---"),
        _row(
            "replay from Kafka: `JournalFollower.catch_up()` (fetch + decode + apply)",
            ">= 100,000 events/s, one core",
            f"**{_n(r['replay_per_s'])} events/s**",
            f"{_n(r['applied'])} events in {r['replay_s']} s wall, "
            f"{r['replay_cpu_s']} s CPU of this process",
        ),
        _row(
            "fetch only (read_committed, same consumer settings, no decode)",
            "-",
            f"{_n(r['fetch_only_per_s'])} records/s",
            f"{r['fetch_only_cpu_s']} s CPU",
        ),
        _row(
            "decode only, in memory (same records)",
            "ceiling ~370-460k/s (DESIGN.md)",
            f"{_n(r['decode_only_per_s'])} events/s",
            "`Codec.decode(value, journal.allowed)`",
        ),
        _row(
            "decode + apply, in memory (same records)",
            "-",
            f"{_n(r['decode_apply_memory_per_s'])} events/s",
            "`evolve` on a fresh `State`",
        ),
        _row(
            "full replay from Kafka / decode + apply in memory",
            ">= 80% (stretch)",
            f"{r['replay_share_of_memory']:.0%}",
            "the share of the in-memory rate that the replay from Kafka reaches",
        ),
        _row(
            "journal",
            "-",
            f"{_n(r['events'])} events, {r['value_mb']} MB of values "
            + (f"({r['log_mb']} MB of log segments)" if r.get("log_mb") is not None else ""),
            f"mean value {r['mean_value_bytes']} bytes; {_n(r['transactions'])} transactions "
            f"(end offset {_n(r['end_offset'])}: one marker per transaction)",
        ),
        _row(
            "state digest",
            "replay == live",
            eq,
            f"live `{r['live_digest'][:16]}...`, Kafka replay `{r['replay_digest'][:16]}...`, "
            f"in-memory replay `{r['memory_replay_digest'][:16]}...`",
        ),
    ]
    travel = r.get("time_travel")
    if travel is not None:
        rows.append(
            _row(
                f"`jm replay --until T` at {travel['points']} random points (process wall)",
                "p99 < 1 s",
                f"**p99 {travel['wall_p99_s']} s** (p50 {travel['wall_p50_s']} s, "
                f"max {travel['wall_max_s']} s)",
                f"fold (snapshot read + tail) p50 {travel['fold_p50_s']} s, "
                f"p99 {travel['fold_p99_s']} s; {travel['from_snapshot']} of "
                f"{travel['points']} from a snapshot; tail median "
                f"{_n(travel['tail_events_median'])} events, max "
                f"{_n(travel['tail_events_max'])}; ladder of {r['ladder_snapshots']} "
                f"snapshots, one per {_n(r['ladder_every'])} offsets; load {travel['load_1m']}",
            )
        )
    return (
        "\n".join(rows)
        + f"\n\nWorkload: {_n(r['jobs_submitted'])} jobs over {r['simulated_s']:,} s of "
        f"simulated time (at most {r['max_jobs_in_memory']} jobs in memory thanks to "
        f"archiving). Generating it took {r['generate_s']} s, writing it (generation "
        f"included) {r['write_s']} s.\nEvent mix: {mix}."
    )


def _latency(rows: list[Results]) -> str:
    out = [
        "| what | mode | target | p50 | p95 | p99 | max | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["accepted"], r["all_running"]
        rate = f"{r['rate_per_s']}/s" if r["mode"] == "paced" else f"~{_n(r['rate_per_s'])}/s"
        if not r.get("signed", True):
            rate += ", **unsigned** (`--insecure-unsigned`)"
        bd = r["accepted_breakdown_p50_ms"]
        out.append(
            f"| submission -> `JobAccepted` | {r['mode']}, {r['jobs']} jobs at {rate} | - | "
            f"{a['p50_ms']} ms | {a['p95_ms']} ms | {a['p99_ms']} ms | {a['max_ms']} ms | "
            f"p50 client->decision {bd['client_to_decision']} ms, decision->visible "
            f"{bd['decision_to_visible']} ms (wall clock) |"
        )
        target = "p50 <= 50 ms, p99 <= 250 ms" if r["mode"] == "paced" else "(burst: queueing)"
        tx = r["journal_transactions"]
        out.append(
            f"| submission -> all 4 subtasks RUNNING journaled | {r['mode']} | {target} | "
            f"**{b['p50_ms']} ms** | {b['p95_ms']} ms | **{b['p99_ms']} ms** | {b['max_ms']} ms | "
            f"leader CPU {r['leader_cpu_pct']}% of a core; journal records per leader "
            f"transaction: mean {tx.get('mean')}, p50 {tx.get('p50')}, p95 {tx.get('p95')}, "
            f"max {tx.get('max')} ({_n(tx.get('transactions'))} transactions) |"
        )
    return "\n".join(out)


DEPLOY_STAGES = ("decide", "commit", "delivery", "slot_start", "edge_clients", "operator_open",
                 "first_report", "report", "record")  # fmt: skip


def _deploy(all_rows: list[Results]) -> str:
    rows = [r for r in all_rows if r["bench"] == "deploy"]
    speed = [r for r in all_rows if r["bench"] == "deploy-throughput"]
    out = [
        "| workers | chaining | slots per job | n | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["all_running"]
        chaining = {None: "default", True: "on", False: "off"}[r.get("chaining")]
        out.append(
            f"| {r['workers']} | {chaining} | {r['slots_per_job']} | {a['n']} | "
            f"**{a['p50_ms']} ms** | {a['p95_ms']} ms | **{a['p99_ms']} ms** | {a['max_ms']} ms |"
        )
    out += [
        "",
        "Breakdown (ms; median over subtasks / on the critical path, median over jobs):",
        "",
    ]
    out.append("| workers | " + " | ".join(DEPLOY_STAGES) + " |")
    out.append("|---" * (len(DEPLOY_STAGES) + 1) + "|")
    for r in rows:
        med, crit = r["median_subtask_ms"], r["critical_path_ms"]
        cells = ["-" if med.get(k) is None else f"{med[k]} / {crit.get(k)}" for k in DEPLOY_STAGES]
        chaining = {None: "default", True: "on", False: "off"}[r.get("chaining")]
        out.append(f"| {r['workers']}, chaining {chaining} | " + " | ".join(cells) + " |")
    if speed:
        out += [
            "",
            "| throughput, real workers | chaining | records | records/s |",
            "|---|---|---|---|",
        ]
        for r in speed:
            chaining = {None: "default", True: "on", False: "off"}[r.get("chaining")]
            out.append(
                f"| {r['job']} | {chaining} | {_n(r['records'])} | {_n(r['records_per_s'])} |"
            )
    return "\n".join(out)


def _txn(rows: list[Results]) -> str:
    out = ["| client settings | transaction content | p50 | p95 | max |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['client']} | {r['pattern']} | {r['p50_ms']} ms | {r['p95_ms']} ms | "
            f"{r['max_ms']} ms |"
        )
    return "\n".join(out)


def _ms(st: Results) -> str:
    if not st.get("n"):
        return "-"
    return f"{_n(st['p50_ms'])} ms / {_n(st['max_ms'])} ms"


def _takeover(rows: list[Results]) -> str:
    out = [
        "| lease ttl | target (ttl + 1 s) | spurious failovers under load | "
        "kill -9 -> `LeaderElected` readable, p50 / max | kill -9 -> probe submission "
        "decided, p50 / max | each kill (elected) | leader CPU in the quiet window | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        q = r["quiet"]
        extra = r["extra_elections_during_kills"]
        spurious = q["spurious_failovers"] + extra
        notes = (f"{r['elected_after_kill'].get('n', 0)} of {r['kills']} kills measured; "
                 f"{q['seconds']} s quiet window: {q['spurious_failovers']} spurious; "
                 f"kill phase: {extra} extra election(s); step-downs logged "
                 f"{q['step_downs_logged']}, failed renewals logged "
                 f"{q['renewals_failed_logged']} (quiet window); journal end offset "
                 f"{_n(r['journal_end_offset'])}")  # fmt: skip
        if r.get("not_exited_20s"):
            notes += f"; not exited 20 s after kill: {r['not_exited_20s']}"
        out.append(_row(
            f"{_n(r['ttl_ms'])} ms", f"<= {_n(r['ttl_ms'] + 1000)} ms", f"**{spurious}**",
            f"**{_ms(r['elected_after_kill'])}**", _ms(r["probe_decided_after_kill"]),
            ", ".join(f"{x}" for x in r["elected_ms"]) + " ms",
            f"{q['leader_cpu_pct']}%", notes,
        ))  # fmt: skip
    return "\n".join(out)


def _handover(r: Results) -> str:
    h = r["handover"]
    rows = [
        _row("what", "target", "p50", "max", "each", "notes"),
        _row("---", "---", "---", "---", "---", "---"),
        _row("SIGTERM of the leader -> successor's `LeaderElected` readable", "<= 0.5 s",
             f"**{h['p50_ms']} ms**", f"**{h['max_ms']} ms**",
             ", ".join(str(x) for x in r["handover_ms"]) + " ms",
             f"{r['replicas']} replicas, no load; the old leader's process exited "
             f"{_ms(r['process_exit'])} (p50 / max) after the signal"
             + (f"; not exited within 20 s: {r['not_exited_20s_after_sigterm']}"
                if r["not_exited_20s_after_sigterm"] else "")),
    ]  # fmt: skip
    return "\n".join(rows)


def _coldstart(r: Results) -> str:
    snap = r["snapshot"]
    rows = [
        _row("start of a standby replica (spawn -> `role STANDBY`)", "journal", "measured",
             "notes"),
        _row("---", "---", "---", "---"),
        _row("full replay (`--no-snapshots`)", f"{_n(r['events'])} events",
             f"**{r['full_replay_s']} s**", f"journal end offset {_n(r['end_offset'])}"),
        _row("snapshot + tail", f"snapshot covering offset {_n(snap['covered_offset'])} "
             f"(99%), tail of {_n(r['tail_offsets'])} offsets",
             f"**{r['snapshot_tail_s']} s**",
             f"snapshot {_n(snap['bytes'])} bytes compressed in {snap['chunks']} chunk(s), "
             f"{snap['jobs_in_state']} jobs in the state; "
             + ("the replica logged it used it" if r["snapshot_used"]
                else "**the replica did not log using it**")),
        _row("empty journal (process start-up alone)", "0 events",
             f"{r['empty_journal_s']} s", "Python start-up, imports, Kafka and Redis clients"),
    ]  # fmt: skip
    return "\n".join(rows)


def _cli(r: Results) -> str:
    snap = r["snapshot"]
    tail = r["end_offset"] - 1 - snap["covered_offset"]
    where = (f"{_n(r['events'])}-event journal (end offset {_n(r['end_offset'])}), snapshot "
             f"covering offset {_n(snap['covered_offset'])} ({_n(snap['bytes'])} bytes "
             f"compressed, {snap['jobs_in_state']} jobs), tail of {_n(tail)} offsets")  # fmt: skip
    rows = [
        _row("command", "target", "median wall", "min / max wall", "median CPU",
             "load (1 min) while measured"),
        _row("---", "---", "---", "---", "---", "---"),
    ]  # fmt: skip
    for key, label, target in (
        ("help", "`jm --help`", "< 0.3 s"),
        ("list", "`jm list`", "< 1 s"),
        ("status", f"`jm status {r['job']}`", "< 1 s"),
        ("list_full_replay", "`jm list --full-replay`", "-"),
    ):
        s = r[key]
        rows.append(_row(label, target, f"**{s['median_s']} s**",
                         f"{s['min_s']} / {s['max_s']} s", f"{s['cpu_median_s']} s",
                         ", ".join(str(x) for x in s["load_1m"])))  # fmt: skip
    return "\n".join(rows) + f"\n\nJournal: {where}."


def _workerkill(r: Results) -> str:
    target = r["coordinator_heartbeat_timeout_ms"] + r["restart_delay_ms"] + 1000
    rows = [
        _row("what", "target", "p50", "max", "each", "notes"),
        _row("---", "---", "---", "---", "---", "---"),
        _row("worker `kill -9` -> every subtask RUNNING again (journal)",
             f"<= {_n(target)} ms (heartbeat timeout + restart delay + 1 s)",
             f"**{_n(r['running_again']['p50_ms'])} ms**",
             f"**{_n(r['running_again']['max_ms'])} ms**",
             ", ".join(_n(x) for x in r["running_again_ms"]) + " ms",
             f"`TaskManagerLost` journaled {_ms(r['lost_journaled'])} (p50 / max) after the "
             f"kill; the job ran on {r['workers_running_the_job_before_kill']} worker(s) "
             "before each kill"),
    ]  # fmt: skip
    return "\n".join(rows)


def _heartbeats(rows: list[Results]) -> str:
    out = [
        "| simulated workers at 1 Hz | target | leader CPU (% of a core) | heartbeats sent/s "
        "(generator) | generator CPU | late generator slices | `TaskManagerLost` in window "
        "| registration -> all joined | leader elections |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = "< 30%" if r["workers"] == 1000 else "-"
        out.append(_row(
            _n(r["workers"]), target, f"**{r['leader_cpu_pct']}%**",
            _n(r["generator_rate_per_s"]), f"{r['generator_cpu_pct']}%",
            r["generator_late_slices"], r["lost_in_window"],
            f"{r['registration_to_all_joined_s']} s" if r["all_joined"]
            else f"**only {_n(r['joined'])} joined in 60 s**",
            f"{r['elections_total']} ({r['elections_in_window']} in the window)",
        ))  # fmt: skip
    return "\n".join(out)


def _pct(st: Results) -> str:
    if not st or not st.get("n"):
        return "-"
    return " / ".join(_n(round(st[k])) for k in ("p50_ms", "p95_ms", "max_ms")) + " ms"


def _ckpt_trigger(rows: list[Results]) -> str:
    out = [_row("workers", "subtasks", "target", "checkpoints", "leader's duration p50 / p95 / "
                "max", "observed trigger -> complete p50 / p95 / max", "aborted", "load avg "
                "before / after"),
           _row(*["---"] * 8)]  # fmt: skip
    for r in rows:
        out.append(_row(r["workers"], r["subtasks"], "<= 100 ms" if r["subtasks"] >= 256 else "-",
                        r["completed"], f"**{_pct(r['duration'])}**", _pct(r["observed"]),
                        r["aborted"], f"{r['load_before']} / {r['load_after']}"))  # fmt: skip
    for r in rows:
        if "breakdown" in r:
            b = r["breakdown"]
            out.append("")
            out.append(f"Where the {r['subtasks']} subtasks' time goes (p50 / p95 / max, wall "
                       "clocks of this machine): the leader's trigger to the fleet handling the "
                       f"last trigger command {_pct(b['trigger_to_last_trigger_handled'])}; the "
                       "last acknowledgement sent to the leader's step that completes the "
                       f"checkpoint {_pct(b['last_ack_sent_to_completed'])}.")  # fmt: skip
            if "trigger_to_trigger_committed" in b:
                out.append("")
                out.append(_ckpt_hops(b))
    return "\n".join(out)


_HOPS = (
    ("trigger_to_trigger_committed", "trigger -> its transaction seen committed by the reader"),
    ("trigger_to_first_worker_got_it", "trigger -> the first worker read its command"),
    ("trigger_to_last_worker_got_it", "trigger -> the last worker read its command"),
    ("last_worker_got_it_to_last_ack_sent", "the last worker read it -> the last ack sent"),
    ("last_ack_sent_to_completed", "the last ack sent -> the leader's step that completes"),
    ("completed_to_completion_committed", "that step -> the completion seen committed"),
)


def _ckpt_hops(b: Results) -> str:
    """The breakdown hop by hop (bench_checkpoints._breakdown), one row each."""
    out = [_row("hop", "p50 / p95 / max"), _row("---", "---")]
    out.extend(_row(text, _pct(b.get(key, {}))) for key, text in _HOPS)
    return "\n".join(out)


def _ckpt_demo(r: Results) -> str:
    size = r["size_bytes"]
    by_vertex = ", ".join(f"{v} {_n(b)}" for v, b in r["last_size_by_vertex"].items())
    return "\n".join([
        _row("what", "p50 / p95 / max", "notes"),
        _row("---", "---", "---"),
        _row("checkpoint duration (leader: trigger -> complete)", f"**{_pct(r['duration'])}**",
             f"{r['completed']} checkpoints of {r['subtasks']} subtasks, {r['aborted']} aborted"),
        _row("a task's trigger/barrier -> acknowledgement", _pct(r["task_duration"]),
             "`duration_ms` of the acknowledgements"),
        _row("checkpoint size", f"**{_n(size.get('min'))} - {_n(size.get('max'))} bytes**",
             f"last: {by_vertex} (bytes per vertex, snapshot envelopes included)"),
        _row("load average before / after", f"{r['load_before']} / {r['load_after']}", ""),
    ])  # fmt: skip


def _ckpt_throughputs(rs: list[Results]) -> str:
    return "\n\n".join(f"Job: {r['job']}.\n\n{_ckpt_throughput(r)}" for r in rs)


def _ckpt_throughput(r: Results) -> str:
    out = [_row("checkpoints", "status", "records/s", "submit -> FINISHED", "all RUNNING -> "
                "FINISHED", "completed / aborted checkpoints", "checkpoint duration p50 / p95 "
                "/ max", "last size"), _row(*["---"] * 8)]  # fmt: skip
    for x in r["runs"]:
        every = f"every {_n(x['checkpoints_every_ms'])} ms" if x["checkpoints_every_ms"] else "off"
        out.append(_row(every, x["status"], _n(x["records_per_s"]), f"{x['seconds']} s",
                        f"{x['all_running_to_finished_s']} s",
                        f"{x['checkpoints_completed']} / {x['checkpoints_aborted']}",
                        _pct(x["checkpoint_duration"] or {}),
                        f"{_n(x['last_size_bytes'])} bytes" if x["last_size_bytes"] else "-",
                        ))  # fmt: skip
    out.append("")
    out.append(f"Mean: {_n(r['mean_records_per_s_without'])} records/s without checkpoints, "
               f"{_n(r['mean_records_per_s_with'])} with: **{r['slower_pct']}% slower** "
               f"(target: at most 10%). Load average before / after: {r['load_before']} / "
               f"{r['load_after']}.")  # fmt: skip
    return "\n".join(out)


def _ckpt_kill(r: Results) -> str:
    rows = [_row("what", "p50", "max", "each", "restored from"), _row(*["---"] * 5)]
    restored = "; ".join(
        f"latest completed before the kill #{x['latest_completed_before_kill']}, new attempts "
        + ", ".join(f"{k} #{c}" for k, c in x["restored"].items())
        + (" (all from a checkpoint)" if x["all_from_checkpoint"] else " (**not all**)")
        for x in r["restores"]
    )
    rows.append(_row("worker `kill -9` -> every subtask RUNNING again, state restored",
                     f"**{_n(round(r['running_again']['p50_ms']))} ms**",
                     f"**{_n(round(r['running_again']['max_ms']))} ms**",
                     ", ".join(_n(x) for x in r["running_again_ms"]) + " ms", restored,
                     ))  # fmt: skip
    rows.append("")
    rows.append(f"Load average before / after: {r['load_before']} / {r['load_after']}.")
    return "\n".join(rows)


CHECKPOINTS_DOC = """## Checkpoints

`tests/bench/bench_checkpoints.py` (`--only ckpt-trigger ckpt-demo ckpt-throughput
ckpt-kill`). A real coordinator (`python -m coordinator coordinator
--allow-checkpointing`) on a fresh cluster per benchmark; the benchmark reads the
journal (read_committed, fetch wait 5 ms) and stamps events on arrival. Checkpoint
durations are the leader's `CheckpointCompleted.duration_ms` (trigger to completion on
its clock), "observed" is `CheckpointTriggered` to `CheckpointCompleted` arriving at the
reader. Real workers write their snapshots to the Kafka state store (the worker's
default). The machine's two cores are shared with the broker and, in this run, with
other work: the load averages (1 / 5 / 15 min) are given.

**Trigger to complete, trivial state.** 256 subtasks: a `sequence` vertex of parallelism
256 on **protocol workers** (`tests.bench.fleet --ack-checkpoints`: 8 simulated
TaskManagers x 32 slots, one process each, no task code; each reads its commands as a real
worker does (read_committed, the worker's fetch wait, signatures checked) and acknowledges
each `TriggerCheckpoint` at once for each of its subtasks on the real reports topic,
signed; nothing is stored). 256 real subtasks would be 256
slot processes, more than this machine runs; the real-worker row is 16 subtasks (2
`python -m worker --slots 8`, `sequence` at 20 records/s each, snapshots of the source
position written to the Kafka store). Checkpoints every 500 ms; the first one is left out.

{trigger}

**The demo job** (compose/demo-job.yaml: sequence 200/s -> map -> keyed_count(2) ->
kafka_sink(2)), `checkpoint_config: {{interval_ms: 1000}}` added to the submission (the
job file's validation still rejects it, the coordinator accepts it with
`--allow-checkpointing`), on 2 real workers with 4 slots each:

{demo}

**Throughput of the keyed job with and without checkpoints**, two jobs. First the
data-plane bench's keyed job (`bench_keyed.deploy_job`: sequence(2, `count` N) -> map
key = n % 10 -> HASH(key) -> keyed_count(2) -> kafka_sink(2), parallelism 2, chained into
2 tasks; 10 keys of state), the job issue 12's target is about. Then a harder one whose
state grows by a key per record (sequence(1) -HASH(value)-> keyed_count(2) -FORWARD->
kafka_sink(2), every key distinct: about 10 MB of counts at 1,000,000 records, written
whole at every checkpoint). Each submitted to the coordinator, on one real worker
(`--slots 5`); one run not counted first (the first run of a fresh worker and broker was
the slowest of every series), then runs alternate (without, with, with, without). The checkpointed
runs set `tolerable_failures: 1000`: a checkpoint still in flight when the bounded source
finishes is declined (FLIP-147 is not built yet), which with Flink's default of 0 would
fail the job over. Barriers travel behind the data already in the edge topics, so a
checkpoint of a source running flat out takes as long as the backlog does.

{throughput}

**Worker `kill -9` with state restored**: 3 real workers (`--slots 2`, default timings:
the coordinator declares a silent worker lost after 12,000 ms), an unbounded keyed job
(sequence 100/s -HASH-> keyed_count(2)) checkpointed every 1,000 ms, FIXED_DELAY restart
after 1,000 ms. Once checkpoints complete, `kill -9` of the worker running
`keyed_count[0]`; measured until every subtask's latest attempt is RUNNING on a live
worker (journal). The restore is read from the workers' `restored checkpoint N from
kafka:...` lines of the new attempts. The killed worker is replaced before the next round.

{kill}
"""


def _rest(rows: list[Results]) -> str:
    out = [
        _row("replica", "endpoint", "jobs in the state", "target p99", "p50", "p99", "max",
             "body", "requests/s (8 clients)", "requests per CPU-second of the replica"),
        _row(*["---"] * 10),
    ]  # fmt: skip
    for r in rows:
        lat, thr = r["latency"], r["throughput"]
        out.append(_row(
            r["replica"], f"`GET {r['endpoint']}`", _n(r["jobs"]), "< 20 ms",
            f"**{lat['p50_ms']} ms**", f"**{lat['p99_ms']} ms**", f"{lat['max_ms']} ms",
            f"{_n(lat['body_bytes'])} B", f"**{_n(thr['per_second'])}**",
            _n(thr["per_cpu_second"]),
        ))  # fmt: skip
    return "\n".join(out)


def _usercode(r: Results) -> str:
    rows = [_row("what", "p50", "max", "each"), _row(*["---"] * 4)]
    names = {
        "builtin": "job with the installed `sequence`: submit -> task FINISHED",
        "upload": f"store the {_n(r['wheel_bytes'])} B wheel (Kafka blob store)",
        "first": "same job, operator from the wheel, first deploy: submit -> FINISHED",
        "cached": "same again, wheel already installed on the worker",
        "overhead": "**first-deploy overhead** (first - builtin, per round)",
    }
    for key, what in names.items():
        st = r[f"{key}_ms"]
        each = ", ".join(_n(x) for x in r["samples_ms"].get(key, [])) or "-"
        rows.append(_row(what, f"{st['p50_ms']} ms", f"{st['max_ms']} ms", each))
    return "\n".join(rows) + f"\n\n{r['rounds']} rounds; 1-minute load average {r['load']:.1f}."


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _memory(r: Results) -> str:
    per, model = r["per_item"], r["model"]
    rows = [_row("bytes per", "measured", "used by docs/memory.md and the start-up check"),
            _row(*["---"] * 3)]  # fmt: skip
    for what, key, model_key in (
        ("job (besides its subtasks)", "job", "job"),
        ("subtask", "subtask", "subtask"),
        ("worker (16 slots)", "worker", "worker"),
        ("ended job kept (archived: id, status, times)", "ended_job_kept", "ended"),
    ):
        rows.append(_row(what, _n(per[key]), _n(model[model_key])))
    rows.append(_row("ended job still in memory (not archived), subtasks included",
                     _n(per["ended_job_in_memory"]), "counted as a job"))  # fmt: skip
    table = [_row("jobs held", "events folded", "RSS, imports only", "RSS, state folded",
                  "RSS, snapshot encoded", "state (JSON)", "snapshot (zlib)", "target"),
             _row(*["---"] * 8)]  # fmt: skip
    for n, f in r["folds"].items():
        table.append(_row(_n(int(n)), _n(f["events"]), _mib(f["rss_idle"]), _mib(f["rss"]),
                          _mib(f["rss_snapshotting"]), _mib(f["state_json_bytes"]),
                          _mib(f["snapshot_bytes"]), _mib(r["targets"][n])))  # fmt: skip
    out = "\n".join(rows) + "\n\n" + "\n".join(table)
    if r.get("running"):
        out += "\n\n" + _memory_running(r)
    return out


def _memory_running(r: Results) -> str:
    """The running coordinator's rows: RSS and state size, and per job and subtask."""
    table = [_row("jobs held (RUNNING)", "subtasks", "workers", "journal events replayed",
                  "VmRSS", "VmHWM", "jm.state.estimated-bytes", "RSS growth per job (4 subtasks)",
                  "model: job + 4 subtasks", "target"),
             _row(*["---"] * 10)]  # fmt: skip
    idle = r["running"].get("0")
    for n, x in r["running"].items():
        if n == "0":
            continue
        grown = x["rss"] - (idle["rss"] if idle else 0)
        per_job = x["subtasks"] // x["jobs"]
        table.append(_row(_n(x["jobs"]), _n(x["subtasks"]), _n(x["state_workers"]),
                          _n(x["events"]), _mib(x["rss"]), _mib(x["rss_peak"]),
                          _mib(x["state_estimated_bytes"]), _n(grown // x["jobs"]),
                          _n(r["model"]["job"] + per_job * r["model"]["subtask"]),
                          _mib(r["targets"][n])))  # fmt: skip
    head = f"A running coordinator holding nothing: VmRSS {_mib(idle['rss'])}.\n\n" if idle else ""
    return head + "\n".join(table)


def _telemetry(r: Results) -> str:
    rows = [_row("telemetry", "all RUNNING p50", "all RUNNING p95", "leader CPU"),
            _row(*["---"] * 4)]  # fmt: skip
    for name in ("off", "on"):
        x = r[name]
        p50, p95 = x["all_running_p50_ms"], x["all_running_p95_ms"]
        rows.append(_row(name, f"{p50:.0f} ms", f"{p95:.0f} ms", f"{x['leader_cpu_pct']:.0f}%"))
    return (f"{r['rounds']} rounds of {r['jobs_per_round']} jobs each way, "
            f"{r['rate_per_s']:g} jobs/s.\n\n" + "\n".join(rows))  # fmt: skip


def _checkpoints(results: dict[str, list[Results]]) -> str:
    missing = "_not measured in this run_"
    return CHECKPOINTS_DOC.format(
        trigger=_ckpt_trigger(results["ckpt-trigger"]) if "ckpt-trigger" in results else missing,
        demo=_ckpt_demo(results["ckpt-demo"][0]) if "ckpt-demo" in results else missing,
        throughput=_ckpt_throughputs(results["ckpt-throughput"])
        if "ckpt-throughput" in results else missing,
        kill=_ckpt_kill(results["ckpt-kill"][0]) if "ckpt-kill" in results else missing,
    )  # fmt: skip


DEPLOY_TEXT = """`tests/bench/bench_deploy.py`. What the line above leaves out: a real 3-vertex job
(`sequence` -> `map` -> `keyed_count`, parallelism 2, forward then hash edge, bounded: it
finishes on its own) on a real coordinator and two real `python -m worker --slots 4`
processes, one job at a time (the next once the previous FINISHED), 3 warm-up jobs not
counted. The clock runs from the client's `producer.send` of `JobSubmitted` to the arrival,
at a read_committed journal reader (fetch wait 500 ms: the broker answers at once when a
record or a commit marker comes), of the last subtask's attempt-0 `TaskStateRecorded`
RUNNING. The second line is the same job on two benchmark workers (`tests/bench/fleet.py`:
DEPLOYING, INITIALIZING and RUNNING of every task of a `DeployTask` sent in one batch the
moment it arrives, as a real worker's report sender sends a starting task's), which
isolates the coordinator's share. Stages, from wall-clock stamps of one machine: `decide`
client send to the decision (`TaskAssigned.event_time`); `commit` decision to the
`TaskAssigned` seen by the reader; `delivery` decision to the worker's DEPLOYING report
(`TaskStateChanged.event_time`, the worker holds the `DeployTask`); `slot_start` DEPLOYING
to INITIALIZING (the spec is in the slot process); `edge_clients` (the task's edge producer
and consumer ready: the slot's warm ones) and `operator_open` the task's own stages (its
`startup ms:` log line, worker/task.py; the edge topics are off this path: the leader
creates them as it decides the run, the task's first send and fetch wait for them);
`first_report` the worker's RUNNING to its `TaskStateRecorded` seen by the reader, in two
parts: `report` to the RUNNING report seen on `jm.reports` (the slot's message to the
worker, the worker's send), `record` from there (the leader's poll, decision and commit)."""


def _history(r: Results) -> str:
    rows = [_row("what", "measured", "notes"), "|---|---|---|",
            _row("journal written (the simulated cluster's)",
                 f"{_n(r['journal_records'])} records", f"{_n(r['jobs_submitted'])} jobs, "
                 f"every one ended and archived; end offset {_n(r['journal_end_offset'])}"),
            _row("rebuild: process start -> answers carry the journal's end offset",
                 f"**{r['rebuild_s']} s**",
                 f"{_n(r['jobs_archived_served'])} jobs in `/jobs/overview` then"),
            _row("of which: the first fold (before the faust worker starts)",
                 f"{r['fold_s']} s", "batched reads, signatures verified, rows rendered"),
            _row("of which: the rows written into the recovered tables",
                 f"{r['publish_s']} s", f"{_n(r['rows_written'])} rows (changelog writes)"),
            _row("of which: the rest", f"{r['rebuild_other_s']} s",
                 "interpreter and worker start, group join, table recovery"),
            _row("`GET /jobs/overview`, sequential, loopback",
                 f"**p50 {r['overview_p50_ms']} ms**, p99 {r['overview_p99_ms']} ms",
                 f"{_n(r['overview_requests'])} requests, "
                 f"{_n(r['overview_bytes'])} bytes each")]  # fmt: skip
    return "\n".join(rows)


def _keyed(rows: list[Results]) -> str:
    out = [_row("run", "N", "seconds", "records/s", "CPU µs/record", "latency source -> sink",
                "load"), "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lat = r.get("latency_ms")
        latency = (f"p50 {lat['p50_ms']} / p95 {lat['p95_ms']} / p99 {lat['p99_ms']} ms at "
                   f"{_n(round(r['rate']))}/s" if lat else "")  # fmt: skip
        rate = "(py-spy attached)" if r["run"] == "profiled" else _n(r["records_per_s"])
        load = f"{r['load_avg']:.2f}" + (
            f" (busy {r['busy_before']:.0%} before)" if "busy_before" in r else ""
        )
        out.append(_row(r["run"], _n(r["records"]), r["seconds"], rate,
                        r["cpu_us_per_record"], latency, load))  # fmt: skip
    shares = next((r["breakdown"] for r in rows if r.get("breakdown")), None)
    if shares:
        percent = (f"{v * 100:.1f}%" for v in shares.values())
        out += ["", _row("stage", *shares), "|---" * (len(shares) + 1) + "|",
                _row("share of slot CPU", *percent)]  # fmt: skip
    return "\n".join(out)


def render(info: dict[str, str], results: dict[str, list[Results]], total_s: float,
           quick: bool = False) -> str:  # fmt: skip
    missing = "_not measured in this run_"
    codec = _codec(results["codec"]) if "codec" in results else missing
    signed = _signing(results["signing"]) if "signing" in results else missing
    replay = _replay(results["replay"][0]) if "replay" in results else missing
    latency = _latency(results["latency"]) if "latency" in results else missing
    txn = _txn(results["txn"]) if "txn" in results else missing
    deploy = _deploy(results["deploy"]) if "deploy" in results else missing
    takeover = _takeover(results["takeover"]) if "takeover" in results else missing
    handover = _handover(results["handover"][0]) if "handover" in results else missing
    coldstart = _coldstart(results["coldstart"][0]) if "coldstart" in results else missing
    workerkill = _workerkill(results["workerkill"][0]) if "workerkill" in results else missing
    cli = _cli(results["cli"][0]) if "cli" in results else missing
    heartbeats = _heartbeats(results["heartbeats"]) if "heartbeats" in results else missing
    rest = _rest(results["rest"]) if "rest" in results else missing
    code = _usercode(results["usercode"][0]) if "usercode" in results else missing
    memory = _memory(results["memory"][0]) if "memory" in results else missing
    telemetry = _telemetry(results["telemetry"][0]) if "telemetry" in results else missing
    history = _history(results["history"][0]) if "history" in results else missing
    keyed = _keyed(results["keyed"]) if "keyed" in results else missing
    quick_note = "\n**Quick run (`--quick`): smaller journal and fewer jobs.**\n" if quick else ""
    return f"""# Benchmarks

Written by `make bench` (`python -m tests.bench.run`) from the run below; every
figure on this page comes from that run. Benchmarks measure and report, they
never fail on a slow figure. Targets are those of DESIGN.md ("Targets").
{quick_note}
| | |
|---|---|
| date | {info["date"]} |
| machine | {info["cpu"]}, {info["memory"]}, {info["os"]} |
| Python | {info["python"]}, {info["clients"]} |
| Kafka | {info["kafka"]} |
| Redis | redis-server from Debian's packages, local |
| whole run | {total_s:.0f} s |

Everything runs on this one 2-core machine: the broker (JVM), Redis, the
coordinator process, the workers and the benchmark process share the two
cores, so latency figures include that contention.

## Codec

`tests/bench/bench_codec.py`'s functions: encode and decode of one
`TaskStateChanged` through `Codec.encode` (value + headers) and
`Codec.decode(value, allowed)`, calls per second, best of three rounds, one
thread.

{codec}

## Signed records

`tests/bench/bench_signing.py`: what HMAC-SHA256 signing (schemas/signing.py)
adds to encoding and decoding, for a small report and a large submission: sign
and verify alone, and with the codec; best of five rounds, one thread.

{signed}

## Replay throughput

`tests/bench/bench_replay.py`. A fresh cluster's journal is filled with a
realistic journal generated the way the leader writes one
(`tests/bench/workload.py`: decide/evolve driven by a simulated fleet of
16 workers x 8 slots; jobs of 1-3 vertices with parallelism 1-4 submitted,
deployed, reporting DEPLOYING/INITIALIZING/RUNNING, finishing, 10% cancelled
by the client, 2% of tasks failing and restarting, 30% with checkpoints every
2 s, workers leaving and coming back, a new leader every 250,000 events,
finished jobs archived after 5 s). Records are encoded with the codec and
produced by a transactional producer committing every ~5,000 records (on
decision boundaries; linger 20 ms, 512 KiB batches), so the journal carries
commit markers like a real one. Then, in this order, on one Python thread:
fetch only, a fresh `JournalFollower.catch_up()` from offset 0 (the figure
the target is about), and decode / decode + apply over the same values in
memory.

{replay}

## Submission latency

`tests/bench/bench_latency.py`. A real coordinator process
(`python -m coordinator coordinator --id bench-1`, defaults) on a fresh
cluster, 4 `ProtocolWorker`s with 8 slots each in a second process
(`tests/bench/fleet.py`; they report DEPLOYING, INITIALIZING, RUNNING as soon
as they get `DeployTask`, in one batch (until 2026-12-04 23:50 UTC one after the
other, each waiting for its produce ack), and FINISHED
0.2 s later so slots free up). The benchmark process submits `JobSubmitted`
(one vertex, operator `sequence`, parallelism 4: one subtask per worker on an
idle cluster), stamping `perf_counter()` just before `producer.send`; a
read_committed journal reader (fetch wait 5 ms) stamps each fetched batch and
matches `JobAccepted.submission` (accepted) and the 4th distinct attempt-0
`TaskStateRecorded` RUNNING of the job (all RUNNING). 20 warm-up jobs are not
counted. `paced`: one submission every 50 ms; `burst`: all back to back (the
all-RUNNING figure is then mostly waiting for slots: 32 slots, 4 per job).
Leader transaction sizes come from the journal offsets of the measured window
(a transaction's records are consecutive, its commit marker takes the next
offset).

{latency}

## Submission to all RUNNING of a real job on real workers

{DEPLOY_TEXT}

{deploy}

### Back-to-back transactions (why)

`tests/bench/bench_txn.py`: transactions committed one right after the other
with aiokafka, as the leader loop does when inputs keep coming.

{txn}

## Leader takeover after `kill -9`, and spurious failovers under load

`tests/bench/bench_ha.py` (`takeover`), once per lease ttl, each on a fresh
cluster: 3 replica processes (`python -m coordinator coordinator
--lease-ttl-ms TTL`, other flags default), the 4 protocol workers of
`tests/bench/fleet.py`, a steady load of 50 submissions/s (one-subtask
`sequence` jobs that finish 0.2 s after they run: ~15 journal events each)
and a busy-loop process spinning on one of the two cores, all started before
anything is measured. First a quiet window where nothing is killed: every
`LeaderElected` in it is a spurious failover. Then 5 rounds (each once the
other two replicas print `role STANDBY`, 1-2 s later, at a random point of the
renewal cycle): `kill -9` of the current leader, a probe submission sent right
after the kill, and the times from the kill until the next `LeaderElected`
and until the probe's `JobAccepted`/`JobRejected` are readable by a
read_committed reader (fetch wait 5 ms, stamped on arrival). The killed
replica is restarted under its id. "Spurious failovers under load" counts the
quiet window's elections plus any election beyond the one each kill causes.

{takeover}

## Graceful handover (SIGTERM)

`tests/bench/bench_ha.py` (`graceful`): 3 replicas, default ttl, no load;
SIGTERM to the leader (it ends its term and releases the lease), time until
the successor's `LeaderElected` is readable; the old leader is restarted
before the next round.

{handover}

## Cold start of a replica

`tests/bench/bench_ha.py` (`cold_start`): the journal of the replay
benchmark's workload (`tests/bench/workload.py`, written the same way), on a
cluster whose Redis lease key is held by a fake holder so the measured
replicas stay standbys and the journal stays as written. A fresh replica
process is timed from spawn until it prints `role STANDBY` (it rebuilds its
state and catches up to the journal's end before that): with
`--no-snapshots` (full replay), and with a snapshot of the state as of 99% of
the journal (folded by a `JournalFollower`, cut by `snapshots.chunks`, written
in one transaction to the snapshots topic as the leader does). The empty
journal row is a replica of an empty cluster: the start-up cost in both.

{coldstart}

## The `jm` command line

`tests/bench/bench_cli.py`: the replay benchmark's journal (reused when this
run wrote it) with a snapshot of its state 10,000 offsets before its end (the
leader writes one every 10,000 events: the longest tail a healthy cluster
leaves), written as the leader does. Each command is a real subprocess
(`python -m coordinator ...`, what the `jm` script runs) timed from spawn to
exit, 5 times; CPU is the subprocess's user + system time. `jm list` and
`jm status` load the latest snapshot and fold only the journal after it;
`jm list --full-replay` folds all of it, for comparison. Wall time is CPU time
stretched by the rest of the machine: the load column says how busy it was.

{cli}

## Worker `kill -9` to the job RUNNING again

`tests/bench/bench_workers.py` (`worker_kill`): a real coordinator (defaults:
heartbeat timeout 20,000 ms), 2 real workers (`python -m worker --slots 2`,
defaults: heartbeat every 1 s), an unbounded `sequence` job (rate 20/s),
parallelism 2, FIXED_DELAY restart after 1,000 ms. Each round: `kill -9` of
the worker running subtask 0, time until every subtask's latest attempt is
RUNNING on a live worker (journal `TaskStateRecorded`, read_committed,
stamped on arrival); the dead worker is then replaced by a fresh one.

{workerkill}

## Heartbeats of a large fleet

`tests/bench/bench_workers.py` (`heartbeats`): for each fleet size, a fresh
cluster with one leader (defaults) and a generator process
(`python -m tests.bench.bench_workers beat`) that registers N simulated
workers (`TaskManagerRegistered`, 1 slot each; the leader journals a
`TaskManagerJoined` for each) and then sends each one `TaskManagerHeartbeat`
per second (20 slices of N/20, one every 50 ms; aiokafka, linger 5 ms).
Once all have joined and after a warm-up, the leader process's CPU
(utime + stime in /proc) over the window, the generator's achieved rate and
CPU, and the `TaskManagerLost` journaled in the window (a leader more than a
heartbeat timeout behind on heartbeats would declare workers lost). The
sizes double until the leader uses ~a core, loses workers, is elected more
than once (a leader that cannot renew its lease in time steps down), cannot
journal every registration within 60 s, or the generator falls behind.
Window: 20 s. The leader does not expose its heartbeat consumer's position,
so its lag is not measured directly. Broker, generator and leader share the
machine's two cores.

{heartbeats}

{_checkpoints(results)}
## REST API reads

`tests/bench/bench_rest.py`. Two real replicas (leader and hot standby, each
serving REST on its own port) of a fresh cluster, one `ProtocolWorker` with 16
slots, and 1,000 submitted jobs (16 run, the others wait for a slot), so the
state of both replicas holds 1,000 jobs. Latency: 500 sequential requests from
one connection after 20 warm-up ones, send to the whole body read. Requests/s:
8 concurrent connections for 5 s, served by the replica's one event-loop thread
(one core); the last column divides by the CPU time the replica used in that
window (the client runs on the same machine).

{rest}

## User code: first deploy of a job with a 1 MB wheel

`tests/bench/bench_usercode.py`. A real coordinator and one real worker (2
slots, a fresh artifact cache) of a fresh cluster; the blob store is the
cluster's Kafka state topic. Per round: a one-vertex job with the installed
`sequence` (`count: 1`), then a fresh ~1 MB pure-Python wheel (the same
`Sequence` class under another name, plus incompressible padding) stored as
`jm submit --code` stores it, then the same job with the wheel's operator (the
worker fetches, verifies and unpacks the wheel, a slot imports it, the slot gets
a fresh interpreter after the task), then that job again with the wheel
installed. Times from the send of the JobSubmitted to the task's FINISHED in
the journal. Nothing simulated.

{code}

## Data plane: the keyed job (`--only keyed`)

`tests/bench/bench_keyed.py`. Real: a coordinator and two `python -m worker --slots 4`
on the shared broker; the job `sequence(2) -> map mod_key n=10 -HASH key->
keyed_count(2) -> kafka_sink(2)`, chaining on, bounded. Records/s: N over the span from
the last subtask RUNNING to FINISHED in the journal; CPU: the workers' and their slot
processes' user + system time over that span, over N. A probe run sizes N for 20 s; the
half-rate run paces the sources at half the rate reached and takes p50/p99 of sink
append time minus the stamp each record got at its source; the profiled run's py-spy
samples are sorted into stages (`STAGES` in the benchmark).

{keyed}

## History server (`jm history`)

`tests/bench/bench_history.py`. Real: Kafka, the history server (`python -m
coordinator.history`, a faust-streaming worker with a fresh consumer group and empty
tables: it folds the journal by the follower's batched reads before the worker starts,
verifying every record's signature, and writes its five tables' changelogs once they
recovered). Simulated: the cluster that wrote the
journal (`workload.JournalGenerator` drives decide/evolve like the leader; signed records
in transactions of ~5,000), until its last job ended and was archived. Then sequential
`GET /jobs/overview` over loopback (aiohttp client in the benchmark's process).

{history}

## Coordinator memory

`tests/bench/bench_memory.py` (docs/memory.md). Real: journals written by
`decide` through the codec and folded by the real `evolve`; the state is the
coordinator's `State`, its size `encode_state` (what a snapshot holds).
Simulated: the workers and their reports (no Kafka in the folds). Bytes
per item: tracemalloc of a folded state less the same state without the items
(200 jobs). Resident memory: a fresh process that imports what `jm coordinator`
imports (aiokafka, redis, aiohttp, the REST API), then folds a journal of that
many RUNNING jobs of 2 vertices x parallelism 2 on workers of 64 slots; it has
no Kafka or Redis connection, whose buffers the target allows for. 10,000 jobs
at once is beyond `MAX_JOBS` (4,096): for that row the generator raises the
admission limit of its own process. Target: `needed_bytes` of docs/memory.md
for the same jobs, subtasks and workers.

Running coordinator (`python -m tests.bench.bench_memory --running N`): the same
journal of N RUNNING jobs, keyed and signed as a leader writes it, produced to a
fresh cluster's journal topic on the real Kafka; then one real `jm coordinator`
(Kafka, Redis, REST) replays it, wins the lease and leads. Once
`/jobmanager/metrics` shows N jobs held and 5 s later: the process's VmRSS and
VmHWM (/proc/PID/status) and `jm.state.estimated-bytes`. The same run with no
job gives the base the growth per job is taken from. The journal's workers never
heartbeat (simulated, like their reports): the replica runs with a one-hour
heartbeat timeout so it keeps them while measured.

{memory}

## Telemetry

`tests/bench/bench_telemetry.py`: the latency benchmark's set-up (one real
coordinator, 4 simulated workers of 8 slots) in rounds that alternate telemetry
off and on, paced submissions. On: spans and metrics to a JSON-lines file
(`--otel-file`, metrics every second) and a Prometheus endpoint
(`--otel-prometheus-port 0`, not scraped). Medians over the rounds of each
round's p50 and p95 of submission to every task RUNNING, and of the leader's CPU.

{telemetry}

## What limits it

**Replay** (`python -m tests.bench.profile_replay BOOTSTRAP 100000`: cProfile
of `catch_up()` over 100,000 events of the same workload, run once by hand on
2026-11-22 on this machine, not by `make bench`): about 42% of the time is
`Codec.decode` (fastavro `schemaless_reader` plus the generated converters),
26% applying (`evolve`, mostly `_apply_TaskStateRecorded`), 24% aiokafka
unpacking records (`Fetcher._unpack_records`, `_consumer_record`: a Python
object per record) and the rest the follower's loop. Fetching and decoding run
one after the other on one thread, so the replay rate is roughly
1 / (1/fetch + 1/decode-and-apply) of the rates in the table; wall time above
CPU time means the follower also waited for fetches. The codec decodes this
mix (JobAccepted carries the whole submission) well below DESIGN.md's
fastavro-only ceiling. Even with free decoding, aiokafka's fetch path alone
(one `ConsumerRecord` per record) caps one thread near the fetch-only rate.
Ways up: a leaner record path (parse record batches directly), or a follower
that decodes while the next fetch is in flight. (Repeated worker reports of
the journaled state are no longer journaled as `InputRejected`, which was
~14% of this journal before.) The headers (event-type, event-id, schema-version, ids) make the
log segments about 2.5 times the size of the values.

**Latency**: the leader commits one Kafka transaction per loop iteration. When
a transaction starts right after the previous commit, the broker answers
`CONCURRENT_TRANSACTIONS` while it still writes the previous markers, and
aiokafka sleeps: a fixed 20 ms (`BACKOFF_OVERRIDE`) for `AddPartitionsToTxn`,
and the full `retry_backoff_ms` (100 ms by default) for `AddOffsetsToTxn`
(what `send_offsets_to_transaction` sends). The table above shows it: ~25 ms
per back-to-back transaction, ~100 ms for offsets-only ones and for the
slowest 5% of the leader-like ones, against a few ms once the backoffs are
small. Every submission is followed by a stream of worker
reports (3 per subtask, then FINISHED), so the leader is nearly always in such
back-to-back commits, and a submission waits for the commit in flight, then
pays its own, then the reports it causes do the same. The leader's own CPU
is low (see the table): it waits, it does not compute. The leader therefore
runs its transactional producer with `retry_backoff_ms=5` and sets aiokafka
0.14's 20 ms constant to 2 ms (`coordinator/runtime/leader.py`): the
"retry_backoff_ms=5, override 2 ms" rows, and the submission latency table
above was measured with them.

## How to reproduce

    make bench                                  # everything, ~{total_s / 60:.0f} min here
    .venv/bin/python -m tests.bench.run --quick --only replay latency   # smaller, no docs
    .venv/bin/python -m tests.bench.run --quick --only takeover handover coldstart \\
        workerkill heartbeats                   # the HA and fleet benchmarks, smaller
    .venv/bin/python -m tests.bench.run --only ckpt-trigger ckpt-demo ckpt-throughput ckpt-kill \\
        --no-docs                               # the checkpoint benchmarks (~11 min here)
    .venv/bin/python -m tests.bench.profile_replay 127.0.0.1:9092 100000   # where replay time goes

`make bench` starts its own Kafka + Redis (`compose/local/launcher.py --name
bench --home /tmp/jm-bench up --ports auto`) and purges them afterwards; it
prints one JSON object per measurement and rewrites this page after a full
run.
"""
