"""Operators: the user code a task runs, registered by name (see ``api``, ``registry``)."""
