"""Fixtures for kbit's tests (see the session fixture ``kbit_library_dir``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gpu: needs an NVIDIA GPU and driver; skipped (with the reason) where none is"
    )
    config.addinivalue_line("markers", "slow: a real build that takes more than a few seconds")
