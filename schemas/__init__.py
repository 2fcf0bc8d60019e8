"""The contract between clients, workers and the coordinator.

- ``schemas.events``: typed events (standard library only; the domain imports it).
- ``schemas.catalog``: topic names and configuration, partition function (standard library only).
- ``schemas.codec``: Avro single-object encoding of events, with Kafka headers (fastavro).
- ``schemas.compat``: FULL compatibility check of the ``.avsc`` versions (avro).
- ``schemas.jobgraph``: job file loading and validation (pydantic).

Import submodules explicitly; this package imports nothing so that importing
``schemas.events`` never drags in fastavro or pydantic.
"""
