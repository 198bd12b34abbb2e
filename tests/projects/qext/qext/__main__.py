"""``python -m qext``: which backend this install has, whether a GPU is usable, and one check."""

from __future__ import annotations

import json

import qext

values = [0.5, -1.25, 3.0, 0.0, -3.0]
q, scale = qext.quantize_int8(values)
print(json.dumps({**qext.info(), "check": {"values": values, "q": q, "scale": scale}}))
