"""Fixtures shared by wheelmatrix's tests; plain helpers live in tests/wm_support.py."""
