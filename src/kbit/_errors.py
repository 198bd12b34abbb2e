"""kbit's exceptions and warnings.

kbit is a runtime library (it does not depend on the wheelmatrix toolkit), so its errors derive
from the builtin classes callers already catch: a bad argument is a :class:`ValueError` or a
:class:`TypeError`, a missing or broken native library an :class:`ImportError`-like
:class:`LibraryError`. Every class carries a message naming what went wrong and, where one exists,
a ``fix`` line. ``str(error)`` contains both.
"""

from __future__ import annotations


class KbitError(Exception):
    """Base class of every kbit error: a message and an optional line saying how to fix it."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if fix is None else f"{message}\n  fix: {fix}")


class KbitValueError(KbitError, ValueError):
    """An argument has a valid type but a value kbit does not accept (names the argument)."""


class KbitTypeError(KbitError, TypeError):
    """An argument has a type kbit does not accept (names the argument and the allowed types)."""


class OverrideError(KbitError, ValueError):
    """An environment override (``KBIT_CUDA_VERSION``, ``KBIT_LIBRARY_DIR``) is malformed or
    asks for something that is not installed."""


class LibraryError(KbitError, RuntimeError):
    """No native library could be selected or loaded."""


class LibraryLoadError(LibraryError):
    """One native library file failed to load: names the file and carries the OS error."""

    def __init__(self, file: str, problem: str, *, fix: str | None = None) -> None:
        super().__init__(f"cannot load {file}: {problem}", fix=fix)
        self.file = file
        self.problem = problem


class KernelError(KbitError, RuntimeError):
    """A native kernel returned an error status (the message is the library's own)."""

    def __init__(self, function: str, status: int, detail: str) -> None:
        super().__init__(f"{function} failed with status {status}: {detail or 'no detail'}")
        self.function = function
        self.status = status
        self.detail = detail


class KbitWarning(UserWarning):
    """Base class of kbit's warnings."""


class CpuFallbackWarning(KbitWarning):
    """kbit runs on CPU although a CUDA path was expected (a GPU or CUDA libraries are present).

    Emitted once per process, saying why and what to install or upgrade."""


class LibraryLoadWarning(KbitWarning):
    """A library failed to load and kbit went on with the next candidate."""
