"""wheelmatrix: release engineering for Python packages whose speed comes from CUDA kernels.

Nothing is read, probed or downloaded at import time.
"""

__version__ = "0.1.0"
