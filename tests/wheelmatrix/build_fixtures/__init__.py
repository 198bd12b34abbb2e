"""Fixtures of the build-stage tests: real cell wheels holding real native libraries.

The libraries are compiled by gcc (Linux) and zig (Windows, x86_64-windows-gnu) in the test from
``fakelib.c``; a "CUDA" variant here is the same C library with a named variant and, optionally,
incompressible padding, because the assemble/repair logic under test only sees files, manifests
and ELF/PE symbols. (Real CUDA cells are built in the slow tests.) ``fakekbit/`` is a minimal
stand-in for kbit's loader that follows kbit's discovery protocol (manifests next to libraries in
``kbit/_lib``, split distributions through the ``kbit.libraries`` entry-point group) so installed
wheels can be checked before kbit's own loader exists.
"""
