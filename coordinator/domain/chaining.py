"""Operator chaining (pure): which vertices of a job graph run together as one task.

Flink's rules: an edge is chained when it is FORWARD, both ends have the same
parallelism, both are chainable (``Vertex.chaining`` and ``JobGraph.chaining`` not
false) and in the same slot sharing group, and it is the only edge out of its source
and the only edge into its target (chains are linear: one input, one output between
two operators). A chain's subtask i is one task in one slot: its vertices' subtasks i
pass records by function call (worker/chain.py), with no edge topic between them.

A chain holds at most ``MAX_TASKS_PER_SLOT`` vertices (one slot's tasks,
schemas/limits.py): a longer line of chainable vertices is cut into chains of that
many, with an edge topic between two of them.

A function of the graph alone, so replay (and every replica) gets the same chains.
"""

import itertools
from collections import Counter

from schemas.events import JobGraph, Partitioning
from schemas.limits import MAX_TASKS_PER_SLOT

Chain = tuple[str, ...]  # vertex ids, upstream first


def _links(graph: JobGraph) -> dict[str, str]:
    """source -> target of every edge Flink's rules would chain (before any cut)."""
    if not graph.chaining:
        return {}
    vertices = {v.id: v for v in graph.vertices}
    outs = Counter(e.source for e in graph.edges)
    ins = Counter(e.target for e in graph.edges)
    links: dict[str, str] = {}
    for e in graph.edges:
        source, target = vertices[e.source], vertices[e.target]
        if (
            e.partitioning is Partitioning.FORWARD
            and source.chaining
            and target.chaining
            and source.parallelism == target.parallelism
            and source.slot_sharing_group == target.slot_sharing_group
            and outs[source.id] == 1
            and ins[target.id] == 1
        ):
            links[e.source] = e.target
    return links


def chains(graph: JobGraph) -> tuple[Chain, ...]:
    """Every vertex in exactly one chain (a vertex chained to nothing: a chain of one),
    chains in the order of their first vertex in ``graph.vertices``, the parts of a
    line cut at ``MAX_TASKS_PER_SLOT`` vertices one after the other."""
    following = _links(graph)
    chained_to = set(following.values())
    out: list[Chain] = []
    for v in graph.vertices:
        if v.id in chained_to:
            continue
        chain = [v.id]
        while chain[-1] in following:
            after = following[chain[-1]]
            if len(chain) == MAX_TASKS_PER_SLOT:
                out.append(tuple(chain))
                chain = [after]
            else:
                chain.append(after)
        out.append(tuple(chain))
    return tuple(out)


def chained_edges(graph: JobGraph) -> frozenset[tuple[str, str]]:
    """(source, target) of every edge that runs inside a chain (records by call, no
    topic): consecutive vertices of one of ``chains``."""
    return frozenset(pair for chain in chains(graph) for pair in itertools.pairwise(chain))


def topic_edges(graph: JobGraph) -> dict[tuple[str, str], int]:
    """{(source, target): partitions} of every edge that is a topic (not inside a
    chain): one partition per subtask of its target. What a run of the job needs
    created before its tasks write and read (coordinator/runtime/edge_topics.py)."""
    inside = chained_edges(graph)
    parallelism = {v.id: v.parallelism for v in graph.vertices}
    return {
        (e.source, e.target): parallelism[e.target]
        for e in graph.edges
        if (e.source, e.target) not in inside
    }
