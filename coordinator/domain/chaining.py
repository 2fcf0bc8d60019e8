"""Operator chaining (pure): which vertices of a job graph run together as one task.

Flink's rules: an edge is chained when it is FORWARD, both ends have the same
parallelism, both are chainable (``Vertex.chaining`` and ``JobGraph.chaining`` not
false) and in the same slot sharing group, and it is the only edge out of its source
and the only edge into its target (chains are linear: one input, one output between
two operators). A chain's subtask i is one task in one slot: its vertices' subtasks i
pass records by function call (worker/chain.py), with no edge topic between them.

A function of the graph alone, so replay (and every replica) gets the same chains.
"""

from collections import Counter

from schemas.events import Edge, JobGraph, Partitioning

Chain = tuple[str, ...]  # vertex ids, upstream first


def chained_edge(graph: JobGraph, edge: Edge) -> bool:
    """Whether `edge` runs inside a chain (records by call, no topic)."""
    if not graph.chaining or edge.partitioning is not Partitioning.FORWARD:
        return False
    vertices = {v.id: v for v in graph.vertices}
    source, target = vertices[edge.source], vertices[edge.target]
    outs = Counter(e.source for e in graph.edges)
    ins = Counter(e.target for e in graph.edges)
    return (
        source.chaining
        and target.chaining
        and source.parallelism == target.parallelism
        and source.slot_sharing_group == target.slot_sharing_group
        and outs[source.id] == 1
        and ins[target.id] == 1
    )


def chains(graph: JobGraph) -> tuple[Chain, ...]:
    """Every vertex in exactly one chain (a vertex chained to nothing: a chain of one),
    chains in the order of their first vertex in ``graph.vertices``."""
    following = {e.source: e.target for e in graph.edges if chained_edge(graph, e)}
    chained_to = set(following.values())
    out: list[Chain] = []
    for v in graph.vertices:
        if v.id in chained_to:
            continue
        chain = [v.id]
        while chain[-1] in following:
            chain.append(following[chain[-1]])
        out.append(tuple(chain))
    return tuple(out)
