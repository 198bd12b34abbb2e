"""Fixtures of the toolchain tests: matrices built in code, a local Debian mirror over HTTP."""
