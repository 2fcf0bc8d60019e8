"""The job graphs that once made the leader build records over the journal's 1 MiB
(issue 10), shared by the pure-domain and the real-leader tests."""

from schemas.events import JobGraph, Vertex


def wide_graph(operator: str) -> JobGraph:
    """10 vertices x parallelism 4,096 with ids of ~30 characters (1.8 MB derived)."""
    return JobGraph(
        vertices=tuple(
            Vertex(
                id=f"vertex-{i:02d}-of-a-rather-wide-job",
                name="v",
                operator=operator,
                parallelism=4096,
                max_parallelism=4096,
            )
            for i in range(10)
        )
    )


def deep_graph(operator: str) -> JobGraph:
    """One vertex of parallelism 32,768 with a 100-character id (6.8 MB derived)."""
    vertex = Vertex(
        id="v" * 100, name="v", operator=operator, parallelism=32768, max_parallelism=32768
    )
    return JobGraph(vertices=(vertex,))
