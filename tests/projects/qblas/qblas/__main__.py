"""Smoke check: ``python -m qblas [LIBRARY]`` prints one JSON line about the loaded library."""

import json
import sys


def main() -> None:
    import qblas

    lib = qblas.load(sys.argv[1]) if len(sys.argv) > 1 else qblas.lib
    print(
        json.dumps(
            {
                "library": str(lib.path),
                "backend": lib.backend(),
                "cuda_runtime_version": lib.cuda_runtime_version(),
                "blas_version": lib.blas_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
