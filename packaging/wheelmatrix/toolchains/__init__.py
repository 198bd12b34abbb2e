"""Stage 3: CUDA toolchains, provided from package registries (PyPI, Debian's archive) or the
system, cached, pinned by ``toolchains.lock`` and verified before any cell builds.

The build stage calls :func:`provide` with a :class:`~wheelmatrix.model.CudaSpec` and gets an
:class:`InstalledToolchain`. See docs/toolchains.md.
"""

from wheelmatrix.toolchains.base import InstalledToolchain, LockedFile, LockEntry, Source
from wheelmatrix.toolchains.cache import Cache
from wheelmatrix.toolchains.manager import Status, get_source, lock, lock_path_of, provide, prune, select, status
from wheelmatrix.toolchains.progress import Reporter
from wheelmatrix.toolchains.verify import VerificationFailed

__all__ = [
    "Cache",
    "InstalledToolchain",
    "LockEntry",
    "LockedFile",
    "Reporter",
    "Source",
    "Status",
    "VerificationFailed",
    "get_source",
    "lock",
    "lock_path_of",
    "provide",
    "prune",
    "select",
    "status",
]
