"""``python -m wheelmatrix``."""

from wheelmatrix.cli import main

raise SystemExit(main())
