"""The error root of the schemas package (standard library only, so pure
modules can raise and catch it without importing the codec)."""


class SchemaError(Exception):
    """Root of every error raised by the schemas package."""
