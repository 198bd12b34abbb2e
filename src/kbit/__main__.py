"""``python -m kbit``: diagnostics (see kbit._diagnose)."""

from __future__ import annotations

import sys

from kbit._diagnose import main

if __name__ == "__main__":
    sys.exit(main())
