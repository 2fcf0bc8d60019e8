"""The REST API every replica serves (Flink's paths and field names, plus our own).

``server.build_app`` assembles the route tables of ``reads`` (every GET),
``writes`` (requests that become events) and ``dashboard`` (the web UI), each
path at the root and under ``/v1/``. Handlers read a ``context.RestContext``:
the replica's folded state (never a per-request replay), its metrics store and
its role. See docs/rest.md.
"""
