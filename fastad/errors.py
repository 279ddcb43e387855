"""errors: fastad's own exception types (each also an instance of the builtin users expect)."""

__all__ = ["AxisError", "CompileError"]


class AxisError(IndexError, ValueError):
    """An axis out of range: catchable as IndexError (PyTorch) or ValueError (NumPy)."""


class CompileError(RuntimeError):
    """`fastad.compile` can't capture what a function does (a value read during tracing, ...)."""
