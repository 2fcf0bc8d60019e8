"""Slot placement (pure) and deployment of a waiting job.

Placement is all-or-nothing, like Flink's default scheduler with a fixed
parallelism: a job runs when every subtask has a slot, else it waits CREATED
(with the reason: too few free slots, or no worker offering an operator yet).

Slot sharing (Flink's default): the unit placed is a shared slot, one per subtask
index of a job's slot sharing group (``Vertex.slot_sharing_group``, "default"
unless set). Shared slot i of a group holds subtask i of every vertex of that
group that has one, so a job needs, per group, as many slots as the group's highest
parallelism, not the sum (at most ``MAX_TASKS_PER_SLOT`` tasks a slot: a group with
more vertices takes more slots per subtask index). Inside a shared slot, each operator chain
(coordinator/domain/chaining.py) is still one task: the slot runs one task per
chain. Vertices in different groups never share a slot; a vertex alone in its group
has slots of its own (and, as chains stay within a group, is chained to nothing).

Each shared slot goes to the worker that offers all its operators and has the most
free slots (ties: smallest tm_id), lowest free slot index first, which spreads a job
across workers (Flink's cluster.evenly-spread-out-slots).
"""

from collections.abc import Mapping, Sequence

from coordinator.domain.chaining import chained_edges, chains
from coordinator.domain.planner import Planner
from coordinator.domain.state import Job, SubtaskKey, Worker
from schemas.events import (
    ChainedTask,
    DeployTask,
    Edge,
    JobStatus,
    JobStatusChanged,
    JobSubmitted,
    SlotRef,
    TaskAssigned,
)
from schemas.limits import MAX_TASKS_PER_SLOT
from schemas.validation import savepoint_handle

Placement = dict[SubtaskKey, tuple[str, int]]
#: The subtasks one shared slot holds (subtask i of each vertex of one slot sharing
#: group, chain by chain, head first), and the operator of each, in the same order.
SlotRequest = tuple[tuple[SubtaskKey, ...], tuple[str, ...]]


def subtasks_of(submission: JobSubmitted) -> list[tuple[SubtaskKey, str]]:
    """(subtask, operator) in graph order: vertex order, then subtask index."""
    return [
        ((v.id, i), v.operator) for v in submission.job_graph.vertices for i in range(v.parallelism)
    ]


def provided(submission: JobSubmitted) -> frozenset[str]:
    """Operators the job's user-code artifact brings: every worker can run them."""
    artifact = submission.artifact
    return frozenset(artifact.operators) if artifact is not None else frozenset()


def slot_requests(submission: JobSubmitted) -> list[SlotRequest]:
    """A shared slot per subtask index of each slot sharing group, groups in the order
    of their first vertex in the graph, then by subtask index. A slot holds at most
    ``MAX_TASKS_PER_SLOT`` tasks, whole chains: where a group's chains at one index hold
    more vertices, they fill a second slot (and a third ...), in chain order."""
    graph = submission.job_graph
    vertices = {v.id: v for v in graph.vertices}
    groups: dict[str, list[tuple[str, ...]]] = {}
    for chain in chains(graph):
        groups.setdefault(vertices[chain[0]].slot_sharing_group, []).append(chain)
    out: list[SlotRequest] = []

    def request(held: list[str], i: int) -> SlotRequest:
        return tuple((v, i) for v in held), tuple(vertices[v].operator for v in held)

    for members in groups.values():
        for i in range(max(vertices[chain[0]].parallelism for chain in members)):
            held: list[str] = []
            for chain in members:
                if i >= vertices[chain[0]].parallelism:
                    continue
                if held and len(held) + len(chain) > MAX_TASKS_PER_SLOT:
                    out.append(request(held, i))
                    held = []
                held.extend(chain)
            out.append(request(held, i))
    return out


def place(
    requests: Sequence[SlotRequest],
    workers: Mapping[str, Worker],
    brought: frozenset[str] = frozenset(),
) -> Placement | str:
    """A slot for every request, or why there is none (the waiting reason). Operators
    in `brought` (the job's own code) run on any worker."""
    free = {tm: workers[tm].free_slots() for tm in sorted(workers)}
    placement: Placement = {}
    for placed, (keys, operators) in enumerate(requests):
        best: str | None = None
        for tm, slots in free.items():
            offered = workers[tm].operators
            if (
                slots
                and all(o in brought or o in offered for o in operators)
                and (best is None or len(slots) > len(free[best]))
            ):
                best = tm
        if best is None:
            for key, operator in zip(keys, operators, strict=True):
                if operator not in brought and not any(
                    operator in w.operators for w in workers.values()
                ):
                    return f"waiting for a worker offering {operator!r} (for {key[0]}#{key[1]})"
            key = keys[0]
            total = sum(len(s) for s in free.values()) + placed
            wanted = " and ".join(repr(o) for o in dict.fromkeys(operators))
            return (
                f"waiting for resources: {len(requests)} slots needed, {total} free; "
                f"no free slot offers operator {wanted} for {key[0]}#{key[1]}"
            )
        slot = free[best].pop(0)
        for key in keys:
            placement[key] = (best, slot)
    return placement


def placement_for(p: Planner, job: Job) -> Placement | str:
    return place(slot_requests(job.submission), p.state.workers, provided(job.submission))


def deploy(p: Planner, job_id: str, placement: Placement) -> None:
    """Assign every subtask of a CREATED job, move it to RUNNING, send DeployTask."""
    job = p.state.jobs[job_id]
    for key, (tm, slot) in placement.items():
        p.emit(
            TaskAssigned,
            task=job.task_ref(key),
            slot=SlotRef(tm_id=tm, slot_index=slot),
            incarnation=p.state.workers[tm].incarnation,
        )
    p.emit(
        JobStatusChanged, job_id=job_id, from_status=JobStatus.CREATED, to_status=JobStatus.RUNNING
    )
    job = p.state.jobs[job_id]
    graph = job.submission.job_graph
    vertices = {v.id: v for v in graph.vertices}
    parallelism = {v.id: v.parallelism for v in graph.vertices}
    handles = job.checkpoints.restore_handles
    restore_id = job.checkpoints.latest_completed
    savepoint = job.submission.savepoint_path
    if restore_id is None and savepoint is not None:
        # No checkpoint of its own yet: the state is the submission's savepoint,
        # read by the tasks from its directory (checkpoint id 0 in DeployTask).
        restore_id = 0
        handles = {k: savepoint_handle(savepoint, k[0], k[1]) for k in job.executions}
    # Edges inside a chain are function calls: no vertex lists them as an output.
    inside = chained_edges(graph)
    outputs: dict[str, tuple[Edge, ...]] = {v.id: () for v in graph.vertices}
    for e in graph.edges:
        if (e.source, e.target) not in inside:
            outputs[e.source] += (e,)
    for chain in chains(graph):
        for i in range(vertices[chain[0]].parallelism):
            head = (chain[0], i)
            tm, slot = placement[head]
            v = vertices[chain[0]]
            p.command(
                DeployTask,
                tm_id=tm,
                incarnation=p.state.workers[tm].incarnation,
                task=job.task_ref(head),
                slot_index=slot,
                operator=v.operator,
                vertex_name=v.name,
                parallelism=v.parallelism,
                max_parallelism=v.max_parallelism,
                config=dict(v.config),
                inputs=tuple(e for e in graph.edges if e.target == v.id),
                outputs=outputs[v.id],
                vertex_parallelism=dict(parallelism),
                restore_checkpoint_id=restore_id,
                restore_state_handle=handles.get(head),
                job_accepted_at=job.accepted_at,
                artifact=job.submission.artifact,
                chained=tuple(
                    ChainedTask(
                        task=job.task_ref((m, i)),
                        operator=vertices[m].operator,
                        vertex_name=vertices[m].name,
                        max_parallelism=vertices[m].max_parallelism,
                        config=dict(vertices[m].config),
                        outputs=outputs[m],
                        restore_state_handle=handles.get((m, i)),
                    )
                    for m in chain[1:]
                ),
            )


def schedule_waiting(p: Planner) -> None:
    """Give free slots to CREATED jobs, oldest acceptance first."""
    waiting = sorted(
        (j for j in p.state.jobs.values() if j.status is JobStatus.CREATED),
        key=lambda j: j.accepted_seq,
    )
    for job in waiting:
        placement = placement_for(p, job)
        if not isinstance(placement, str):
            deploy(p, job.job_id, placement)
