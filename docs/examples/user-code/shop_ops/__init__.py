"""Example user code: a function for the built-in ``map`` and an operator of its own."""
