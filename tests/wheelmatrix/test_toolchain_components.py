"""CUDA components (cuBLAS, ...) in toolchains, without network or CUDA: which files each source
pins for them, staleness, the cache key, the trees each source lays out, the system check and
the verification probe.

The pypi source runs against a fake PyPI on 127.0.0.1 (the JSON API plus synthesized wheels,
installed by the real pip), the debian source against the local mirror of
toolchain_fixtures/mirror.py with component packages added; a stand-in nvcc (a shell script
that checks the headers and ``-l`` libraries it is given exist) replaces the compiler, because a
real CUDA toolkit is hundreds of MB (the real installs: test_toolchain_components_real.py).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import shutil
import stat
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from wheelmatrix.data import components as known_components
from wheelmatrix.errors import ToolchainError
from wheelmatrix.model import CudaSpec, CudaVersion, Toolchain
from wheelmatrix.toolchains import (
    Cache,
    InstalledToolchain,
    LockedFile,
    LockEntry,
    VerificationFailed,
    lock,
    lock_path_of,
    provide,
    status,
)
from wheelmatrix.toolchains import data as tc_data
from wheelmatrix.toolchains.base import identity_of
from wheelmatrix.toolchains.debian import DebianSource
from wheelmatrix.toolchains.lockfile import read_lock, write_lock
from wheelmatrix.toolchains.manager import pinned, stale_reason
from wheelmatrix.toolchains.progress import Reporter
from wheelmatrix.toolchains.pypi import PypiSource
from wheelmatrix.toolchains.system import SystemSource
from wheelmatrix.toolchains.verify import covers, verify

from .toolchain_fixtures.matrices import matrix, spec
from .toolchain_fixtures.mirror import Entry, Mirror, fake_toolkit

SHA = "ab" * 32


def with_components(s: CudaSpec, *names: str) -> CudaSpec:
    table = known_components()
    return dataclasses.replace(s, components=tuple(table[n] for n in names))


def pypi_spec(*names: str, version: str = "13.0") -> CudaSpec:
    return with_components(spec(version, Toolchain("pypi"), sass=(75, 120), ptx=(120,)), *names)


def debian_spec(*names: str, suite: str = "trixie") -> CudaSpec:
    return with_components(spec("12.4", Toolchain("debian", suite=suite), sass=(75, 90), ptx=(90,)), *names)


def entry_for(s: CudaSpec, names: frozenset[str] | set[str]) -> LockEntry:
    files = tuple(
        LockedFile(n, "1", f"{n}-1.whl", f"https://x/{n}.whl", f"{i:064x}", 1) for i, n in enumerate(sorted(names))
    )
    return LockEntry(s.version, s.toolchain.source, s.toolchain.describe(), files)


# --- data ------------------------------------------------------------------------------------


def test_every_component_has_data_for_every_source() -> None:
    table = tc_data.table()
    for name, component in known_components().items():
        facts = table["components"][name]
        assert facts["header"].endswith(".h") and "wm_probe_component" in facts["probe"], name
        assert facts["needs"][: len(component.libraries)] == list(component.libraries), name
        assert name in table["pypi"]["components"], name
        assert component.runtime_wheel(13) not in table["pypi"]["components"][name]  # added by the source
        for version, cfg in table["debian"]["versions"].items():
            assert cfg["components"][name], (version, name)


# --- package names, staleness, cache key -------------------------------------------------------


def test_package_names_include_the_components() -> None:
    base = PypiSource().package_names(pypi_spec())
    assert PypiSource().package_names(pypi_spec("cublas")) == base | {"nvidia-cublas"}
    assert PypiSource().package_names(pypi_spec("cusolver")) == base | {
        "nvidia-cusolver", "nvidia-cublas", "nvidia-cusparse", "nvidia-nvjitlink",
    }  # fmt: skip
    assert PypiSource.component_wheels(pypi_spec("cusolver", "cublas", "cufft")) == (
        "nvidia-cusolver", "nvidia-cublas", "nvidia-cusparse", "nvidia-nvjitlink", "nvidia-cufft",
    )  # fmt: skip
    dbase = DebianSource().package_names(debian_spec())
    assert DebianSource().package_names(debian_spec("cublas")) == dbase | {"libcublas12", "libcublaslt12"}
    bookworm = with_components(spec("11.8", Toolchain("debian", suite="bookworm")), "cublas")
    assert {"libcublas11", "libcublaslt11", "g++-11"} <= DebianSource().package_names(bookworm)
    assert SystemSource().package_names(with_components(spec("12.8", Toolchain("system")), "cublas")) == frozenset()


def test_lock_entry_without_a_requested_component_is_stale(tmp_path: Path) -> None:
    plain, cublas = pypi_spec(), pypi_spec("cublas")
    old = entry_for(plain, PypiSource().package_names(plain))
    assert stale_reason(old, plain) is None
    problem = stale_reason(old, cublas)
    assert problem == "it lacks nvidia-cublas (the matrix asks for the components cublas)"
    write_lock(tmp_path / "toolchains.lock", [old])
    with pytest.raises(ToolchainError, match=r"is stale for CUDA 13\.0: it lacks nvidia-cublas") as info:
        pinned(cublas, tmp_path / "toolchains.lock", offline=True, reporter=Reporter(enabled=False))
    assert info.value.fix == "run `wheelmatrix toolchain lock 13.0` and commit the lock"
    # and the other way round: a component the matrix dropped is pinned for nothing
    new = entry_for(cublas, PypiSource().package_names(cublas))
    assert stale_reason(new, cublas) is None
    assert "it pins nvidia-cublas that" in str(stale_reason(new, plain))
    d = debian_spec("curand")
    assert "it lacks libcurand10" in str(stale_reason(entry_for(d, DebianSource().package_names(debian_spec())), d))


def test_cache_key_changes_with_components_only() -> None:
    plain = pypi_spec()
    entry = entry_for(plain, PypiSource().package_names(plain))
    assert "components" not in PypiSource().recipe(plain)  # toolchains without components keep their key
    keys = {
        identity_of(entry, PypiSource().recipe(s))
        for s in (plain, pypi_spec("cublas"), pypi_spec("cufft"), pypi_spec("cublas", "cufft"))
    }
    assert len(keys) == 4
    assert "components" not in DebianSource().recipe(debian_spec())
    assert DebianSource().recipe(debian_spec("cublas"))["keep-components"] == {
        "from": "usr/lib/x86_64-linux-gnu/", "to": "lib64/", "files": ["libcublas.so*", "libcublasLt.so*"],
    }  # fmt: skip
    assert SystemSource().recipe(with_components(spec("12.8", Toolchain("system")), "cublas"))


def test_committed_lock_stays_current() -> None:
    """The repository's matrix asks for no component: its pins and cache keys are unchanged."""
    from wheelmatrix.config import load_matrix

    repo = Path(__file__).resolve().parents[2]
    m = load_matrix(repo / "matrix.toml")
    entries = read_lock(repo / "toolchains.lock")
    for s in m.cuda:
        if s.toolchain.source == "system":
            continue
        assert not s.components
        entry = entries[(str(s.version), s.toolchain.source)]
        assert stale_reason(entry, s) is None
        assert not any(f.role == "component" for f in entry.files)


def test_verification_records_cover_components() -> None:
    s = pypi_spec("cublas")
    assert covers({"sass": [75, 120], "ptx": [120], "components": ["cublas"]}, s)
    assert not covers({"sass": [75, 120], "ptx": [120]}, s)  # verified before cublas was asked for
    assert covers({"sass": [75, 120], "ptx": [120]}, pypi_spec())  # records older than components


def test_installed_toolchain_shows_components() -> None:
    tc = InstalledToolchain(
        CudaVersion(13, 0), "pypi", Path("/c"), Path("/c/bin/nvcc"), None, "13.0.88", "id", 1, True,
        components=("cublas",),
    )  # fmt: skip
    assert tc.to_json()["components"] == ["cublas"]


# --- a stand-in nvcc and the verification probe ------------------------------------------------

# Knows its release; for -c checks the first #include <...> of a .cpp is in $TOP/include; for
# -l<name> checks $TOP/lib/lib<name>.so exists (like ld's "cannot find -l"); writes the output.
STAND_IN_NVCC = r"""#!/bin/sh
top=$(cd "$(dirname "$0")/.." && pwd)
case "$1" in --version) echo "Cuda compilation tools, release 13.0, V13.0.88"; exit 0;; esac
out=""; prev=""
for a in "$@"; do
  [ "$prev" = "-o" ] && out="$a"
  case "$a" in
    -l*) [ -e "$top/lib/lib${a#-l}.so" ] || { echo "ld: cannot find $a: No such file or directory" >&2; exit 1; };;
    *.cpp) h=$(sed -n 's/^#include <\(.*\)>.*/\1/p' "$a" | head -n 1)
           [ -e "$top/include/$h" ] || { echo "$a: fatal error: $h: No such file or directory" >&2; exit 1; };;
  esac
  prev="$a"
done
printf 'stand-in .nv_fatbin\n' > "$out"
"""


def stand_in_root(root: Path, libs: Mapping[str, str | None] | None = None, headers: tuple[str, ...] = ()) -> Path:
    """A CUDA root with the stand-in nvcc; ``libs``: file name -> symlink target (None: a file)."""
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "lib").mkdir()
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(STAND_IN_NVCC)
    nvcc.chmod(0o755)
    for name, target in (libs or {}).items():
        if target is None:
            (root / "lib" / name).write_bytes(b"\x7fELF")
        else:
            (root / "lib" / name).symlink_to(target)
    for h in headers:
        (root / "include" / h).write_text("/* stand-in */\n")
    return root


CUBLAS_LIBS = {"libcublas.so.13": None, "libcublasLt.so.13": None, "libcublas.so": "libcublas.so.13",
               "libcublasLt.so": "libcublasLt.so.13"}  # fmt: skip


def test_probe_links_each_component(tmp_path: Path) -> None:
    root = stand_in_root(tmp_path / "cuda", CUBLAS_LIBS, ("cublas_v2.h",))
    result = verify(pypi_spec("cublas"), root / "bin" / "nvcc", {})
    assert result.components == ("cublas",)
    assert result.to_json()["components"] == ["cublas"]
    assert "components" not in verify(pypi_spec(), root / "bin" / "nvcc", {}).to_json()


def test_probe_failure_names_the_component(tmp_path: Path) -> None:
    libs = {k: v for k, v in CUBLAS_LIBS.items() if not k.startswith("libcublasLt")}
    root = stand_in_root(tmp_path / "cuda", libs, ("cublas_v2.h",))
    with pytest.raises(VerificationFailed) as info:
        verify(pypi_spec("cublas"), root / "bin" / "nvcc", {})
    assert info.value.component == "cublas"
    assert info.value.step == "link probe of component cublas (-lcublas -lcublasLt)"
    assert "cannot find -lcublasLt" in info.value.message
    assert info.value.fix and "cublas (a CUDA component the matrix asks for) cannot be linked" in info.value.fix
    no_header = stand_in_root(tmp_path / "other", CUBLAS_LIBS)
    with pytest.raises(VerificationFailed, match=r"compile probe of component cublas \(#include <cublas_v2\.h>\)"):
        verify(pypi_spec("cublas"), no_header / "bin" / "nvcc", {})


# --- system ------------------------------------------------------------------------------------


def test_system_root_lacking_a_component_is_a_clear_error(tmp_path: Path) -> None:
    root = stand_in_root(tmp_path / "cuda-13.0", {"libcublas.so.13": None})
    s = with_components(spec("13.0", Toolchain("system", path=root), sass=(75,), ptx=()), "cublas")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(ToolchainError) as info:
        provide(s, cache=cache)
    assert info.value.message.startswith(f"the CUDA 13.0 toolkit at {root} lacks {root}/include/cublas_v2.h (and ")
    assert "lib64/libcublas.so, lib64/libcublasLt.so), which the component cublas needs" in info.value.message
    assert info.value.fix and "libcublas-dev-13-0" in info.value.fix and 'remove "cublas"' in info.value.fix
    assert not (cache.root / "system").exists()  # nothing was verified or recorded
    # with the files there it is verified, the probe included, and its identity differs
    (root / "include" / "cublas_v2.h").write_text("/* */\n")
    for name, target in CUBLAS_LIBS.items():
        path = root / "lib" / name
        if target is not None:
            path.symlink_to(target)
        elif not path.exists():
            path.write_bytes(b"\x7fELF")
    tc = provide(s, cache=cache)
    assert tc.verified and tc.components == ("cublas",) and tc.to_json()["components"] == ["cublas"]
    plain = provide(dataclasses.replace(s, components=()), cache=cache)
    assert plain.identity != tc.identity and plain.components == ()
    (row,) = status(matrix(tmp_path, s), cache=cache)
    assert row.verified and row.components == ("cublas",) and row.to_json()["components"] == ["cublas"]


# --- pypi: a fake PyPI on 127.0.0.1 ------------------------------------------------------------


def make_wheel(name: str, version: str, files: Mapping[str, bytes], *, tag: str = "py3-none-manylinux_2_27_x86_64",
               requires: tuple[str, ...] = ()) -> tuple[str, bytes]:  # fmt: skip
    """A wheel pip installs: the files, plus dist-info METADATA, WHEEL and RECORD."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    content = {
        **files,
        f"{info}/METADATA": meta.encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = []
    for path, data in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, data in content.items():
            entry = zipfile.ZipInfo(path)
            entry.external_attr = (stat.S_IFREG | (0o755 if "/bin/" in path else 0o644)) << 16  # pip keeps the x bit
            z.writestr(entry, data)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return f"{dist}-{version}-{tag}.whl", buf.getvalue()


NVCC_PROFILE = b'TOP = $(_HERE_)/..\nINCLUDES += "-I$(TOP)/include"\nLIBRARIES =+ "-L$(TOP)/lib64"\n'
MARKER = "(sys_platform == 'linux' or sys_platform == 'win32')"


class FakePyPI:
    """The JSON API (``/pypi/<name>/json``) and files (``/files/<name>``) of a tiny index."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.releases: dict[str, dict[str, list[dict[str, object]]]] = {}
        self.requests: list[str] = []
        self.url = ""

    def add(
        self,
        name: str,
        version: str,
        files: Mapping[str, bytes] | None = None,
        *,
        tag: str = "py3-none-manylinux_2_27_x86_64",
        requires: tuple[str, ...] = (),
    ) -> str:
        filename, data = make_wheel(name, version, files or {}, tag=tag, requires=requires)
        self.files[filename] = data
        self.releases.setdefault(name, {})[version] = [
            {"filename": filename, "url": f"../../files/{filename}", "size": len(data), "yanked": False,
             "digests": {"sha256": hashlib.sha256(data).hexdigest()}},
        ]  # fmt: skip
        return filename

    def toolkit(self) -> None:
        """CUDA 13.0 as NVIDIA publishes it: component versions unrelated to 13.0."""
        root = "nvidia/cu13/"
        base = {
            "nvidia-cuda-nvcc": {root + "bin/nvcc": STAND_IN_NVCC.encode(), root + "bin/nvcc.profile": NVCC_PROFILE},
            "nvidia-nvvm": {root + "nvvm/bin/cicc": b"#!/bin/sh\n"},
            "nvidia-cuda-crt": {root + "include/crt/host_config.h": b"/* */\n"},
            "nvidia-cuda-runtime": {root + "lib/libcudart.so.13": b"\x7fELF", root + "include/cuda_runtime.h": b""},
            "nvidia-cuda-cccl": {root + "include/cccl/cuda/std/version": b""},
        }
        for name, files in base.items():
            self.add(name, "13.0.88", files)
            self.add(name, "13.2.86", files)  # another minor: never taken for 13.0
        cublas = {root + "lib/libcublas.so.13": b"\x7fELF", root + "lib/libcublasLt.so.13": b"\x7fELF",
                  root + "include/cublas_v2.h": b"/* */\n", root + "include/cublasLt.h": b"/* */\n"}  # fmt: skip
        for v in ("13.0.2.14", "13.1.1.3", "13.4.1.3"):  # 13.1.1.3 is CUDA 13.0's (13.0.2.14 is older)
            self.add("nvidia-cublas", v, cublas)
        for v in ("13.0.88", "13.0.96", "13.2.86"):
            self.add("nvidia-nvjitlink", v, {root + f"lib/libnvJitLink.so.13.{v}": b"\x7fELF"})
        self.add("nvidia-cufft", "12.0.0.61", {root + "lib/libcufft.so.12": b"\x7fELF", root + "include/cufft.h": b""})
        for version, cublas_pin in (("13.0.2", "13.1.0.3"), ("13.0.3.0", "13.1.1.3"), ("13.2.2", "13.4.1.3")):
            self.add("cuda-toolkit", version, tag="py2.py3-none-any", requires=(
                f"nvidia-cublas=={cublas_pin}.*; {MARKER} and extra == 'cublas'",
                f"nvidia-cuda-nvrtc=={version[:5]}88.*; {MARKER} and extra == 'cublas'",
                f"nvidia-cufft==12.0.0.61.*; {MARKER} and extra == 'cufft'",
                f"nvidia-nvjitlink<14,>={version[:5]}88; {MARKER} and extra == 'cufft'",
                f"nvidia-cuda-nvcc=={version[:5]}88.*; {MARKER} and extra == 'nvcc'",
            ))  # fmt: skip

    @property
    def index(self) -> str:
        return f"{self.url}/pypi"

    @contextmanager
    def serve(self) -> Iterator[str]:
        pypi = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                pypi.requests.append(self.path)
                parts = self.path.strip("/").split("/")
                body: bytes | None = None
                if len(parts) == 3 and parts[0] == "pypi" and parts[2] == "json" and parts[1] in pypi.releases:
                    body = json.dumps({"releases": pypi.releases[parts[1]]}).encode()
                elif len(parts) == 2 and parts[0] == "files":
                    body = pypi.files.get(parts[1])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self.url
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


@pytest.fixture
def fake_pypi(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePyPI]:
    pypi = FakePyPI()
    pypi.toolkit()
    with pypi.serve():
        monkeypatch.setenv("WHEELMATRIX_PYPI_URL", pypi.index)
        yield pypi


def test_pypi_resolves_component_versions_through_the_metapackage(fake_pypi: FakePyPI) -> None:
    entry = PypiSource().resolve(pypi_spec("cublas", "cufft"))
    pinned_versions = {f.name: (f.version, f.role) for f in entry.files}
    assert pinned_versions == {
        "nvidia-cuda-nvcc": ("13.0.88", "cuda"), "nvidia-nvvm": ("13.0.88", "cuda"),
        "nvidia-cuda-crt": ("13.0.88", "cuda"), "nvidia-cuda-runtime": ("13.0.88", "cuda"),
        "nvidia-cuda-cccl": ("13.0.88", "cuda"),
        # cuda-toolkit 13.0.3.0 (the newest 13.0.*) pins cublas 13.1.1.3: not the newest cublas,
        # not the newest "13.0" one
        "nvidia-cublas": ("13.1.1.3", "component"),
        "nvidia-cufft": ("12.0.0.61", "component"),
        # >=13.0.88,<14: the newest of CUDA 13.0, not 13.2.86
        "nvidia-nvjitlink": ("13.0.96", "component"),
    }  # fmt: skip
    assert "nvidia-cuda-nvrtc" not in pinned_versions  # cublasLt only dlopens it at run time
    assert entry.indexes[0] == fake_pypi.index
    assert entry.indexes[1].startswith("component versions from cuda-toolkit 13.0.3.0 (cuda_toolkit-13.0.3.0-")
    before = len(fake_pypi.requests)
    plain = PypiSource().resolve(pypi_spec())
    assert len(plain.indexes) == 1 and not any("cuda-toolkit" in r for r in fake_pypi.requests[before:])


def test_pypi_metapackage_problems_are_clear(fake_pypi: FakePyPI) -> None:
    good = fake_pypi.files["cuda_toolkit-13.0.3.0-py2.py3-none-any.whl"]
    fake_pypi.files["cuda_toolkit-13.0.3.0-py2.py3-none-any.whl"] = good + b"tampered"
    with pytest.raises(ToolchainError, match=r"cuda_toolkit-13\.0\.3\.0-py2\.py3-none-any\.whl from .* does not match"):
        PypiSource().resolve(pypi_spec("cublas"))
    fake_pypi.files["cuda_toolkit-13.0.3.0-py2.py3-none-any.whl"] = good
    with pytest.raises(ToolchainError, match=r"requires no nvidia-curand, so wheelmatrix cannot tell") as info:
        PypiSource().resolve(pypi_spec("curand"))
    assert info.value.fix and "[pypi.components]" in info.value.fix
    del fake_pypi.releases["cuda-toolkit"]["13.0.2"], fake_pypi.releases["cuda-toolkit"]["13.0.3.0"]
    with pytest.raises(ToolchainError, match=r"PyPI has no cuda-toolkit 13\.0\.\* release"):
        PypiSource().resolve(pypi_spec("cublas"))


def test_pypi_lock_install_and_verify_with_a_component(fake_pypi: FakePyPI, tmp_path: Path) -> None:
    """lock -> provide (download, one pip install, fix-ups, component check) -> verify with the
    stand-in nvcc: the real code path end to end, with a cuBLAS made of a few bytes."""
    m = matrix(tmp_path, pypi_spec("cublas"))
    lock(m)
    entry = read_lock(lock_path_of(m))[("13.0", "pypi")]
    assert {f.name for f in entry.files if f.role == "component"} == {"nvidia-cublas"}
    assert "component versions from cuda-toolkit 13.0.3.0" in entry.indexes[1]
    cache = Cache(tmp_path / "cache")
    tc = provide(m.cuda[0], lock_path=lock_path_of(m), cache=cache)
    assert tc.verified and tc.components == ("cublas",)
    lib = tc.root / "lib"
    assert (lib / "libcublas.so").is_symlink() and str((lib / "libcublas.so").readlink()) == "libcublas.so.13"
    assert str((lib / "libcublasLt.so").readlink()) == "libcublasLt.so.13"
    assert not (lib / "libnvJitLink.so").exists()  # only what cublas needs
    assert (tc.root / "include" / "cublas_v2.h").is_file()
    record = cache.read_entry(cache.entry_path("pypi", "13.0", tc.identity))
    assert record is not None and record.meta["components"] == ["cublas"]
    assert record.verifications[0]["components"] == ["cublas"]
    (row,) = status(m, cache=cache)
    assert (row.locked, row.cached, row.verified, row.components) == (True, True, True, ("cublas",))
    # the same toolchain without cublas is another cache entry
    plain = matrix(tmp_path / "plain", pypi_spec())
    plain.path.parent.mkdir()
    lock(plain)
    other = provide(plain.cuda[0], lock_path=lock_path_of(plain), cache=cache)
    assert other.identity != tc.identity and other.components == ()
    assert not (other.root / "lib" / "libcublas.so").exists()


def test_pypi_wheel_lacking_a_component_file_is_refused(fake_pypi: FakePyPI, tmp_path: Path) -> None:
    fake_pypi.add("nvidia-cublas", "13.1.1.3", {"nvidia/cu13/lib/libcublas.so.13": b"\x7fELF"})  # no header, no Lt
    m = matrix(tmp_path, pypi_spec("cublas"))
    lock(m)
    cache = Cache(tmp_path / "cache")
    with pytest.raises(ToolchainError) as info:
        provide(m.cuda[0], lock_path=lock_path_of(m), cache=cache)
    assert "the CUDA 13.0 wheels provided no cublas: include/cublas_v2.h; cublas: lib64/libcublasLt.so" in (
        info.value.message
    )
    assert not cache.entries.exists() or not any(cache.entries.iterdir())


# --- debian: the local mirror with component packages -----------------------------------------


SUITE = "wmcomp"


def toolkit_with_components() -> dict[str, dict[str, dict[str, Entry]]]:
    """fake_toolkit("12.4") plus cuBLAS and cuFFT as Debian splits them (nvidia-cuda-dev holds the
    headers and .so links, one package per library soname)."""
    tk = fake_toolkit("12.4")
    lib = "usr/lib/x86_64-linux-gnu/"
    dev = tk["non-free"]["nvidia-cuda-dev"]
    dev.update({
        "usr/include/cublas_v2.h": b"/* cublas_v2.h */\n",
        "usr/include/cublasLt.h": b"/* cublasLt.h */\n",
        "usr/include/cufft.h": b"/* cufft.h */\n",
        lib + "libcublas.so": ("symlink", "libcublas.so.12"),
        lib + "libcublasLt.so": ("symlink", "libcublasLt.so.12"),
        lib + "libcufft.so": ("symlink", "libcufft.so.11"),
        lib + "libnvJitLink.so": ("symlink", "libnvJitLink.so.12"),  # libnvjitlink12 is not fetched for cufft
        lib + "stubs/libcublas.so": b"\x7fELF stub",
    })  # fmt: skip
    tk["non-free"]["libcufft11"] = {
        lib + "libcufft.so.11.2.1.3": b"\x7fELF",
        lib + "libcufft.so.11": ("symlink", "libcufft.so.11.2.1.3"),
    }
    tk["non-free"]["libcublas12"] = {
        lib + "libcublas.so.12.4.5.8": b"\x7fELF",
        lib + "libcublas.so.12": ("symlink", "libcublas.so.12.4.5.8"),
    }
    tk["non-free"]["libcublaslt12"] = {
        lib + "libcublasLt.so.12.4.5.8": b"\x7fELF",
        lib + "libcublasLt.so.12": ("symlink", "libcublasLt.so.12.4.5.8"),
    }
    return tk


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gpg") is None or shutil.which("gpgv") is None:
        pytest.skip("needs gpg and gpgv")
    home = tmp_path_factory.mktemp("gnupg")
    Mirror(tmp_path_factory.mktemp("unused"), home).make_key()
    return home


@pytest.fixture
def mirror(tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    m = Mirror(tmp_path / "mirror", key)
    m.add_suite(SUITE, toolkit_with_components(), "12.4")
    with m.serving() as url:
        monkeypatch.setenv("WHEELMATRIX_DEBIAN_MIRROR", url)
        monkeypatch.setenv("WHEELMATRIX_DEBIAN_KEYRING", str(m.keyring))
        yield m


def test_debian_pins_and_keeps_the_component(mirror: Mirror, tmp_path: Path) -> None:
    from wheelmatrix.toolchains.manager import fetch_files

    s = debian_spec("cublas", "cufft", suite=SUITE)
    m = matrix(tmp_path, s)
    lock(m)
    entry = read_lock(lock_path_of(m))[("12.4", "debian")]
    components = {f.name: f.sha256 for f in entry.files if f.role == "component"}
    assert components == {n: mirror.packages[n]["sha256"] for n in ("libcublas12", "libcublaslt12", "libcufft11")}
    cache = Cache(tmp_path / "cache")
    fetch_files(entry, cache, offline=False, reporter=Reporter(enabled=False))
    staging = tmp_path / "staging"
    staging.mkdir()
    built = DebianSource().assemble(s, [(f, cache.download_path(f.sha256, f.filename)) for f in entry.files], staging)
    lib = staging / built.root / "lib64"
    kept = sorted(p.name for p in lib.iterdir() if p.name.startswith(("libcublas", "libcufft", "libnvJitLink")))
    assert kept == [  # no static archive, no libnvJitLink.so pointing at a package not fetched
        "libcublas.so", "libcublas.so.12", "libcublas.so.12.4.5.8",
        "libcublasLt.so", "libcublasLt.so.12", "libcublasLt.so.12.4.5.8",
        "libcufft.so", "libcufft.so.11", "libcufft.so.11.2.1.3",
    ]  # fmt: skip
    assert (lib / "libcublas.so").resolve() == (lib / "libcublas.so.12.4.5.8")
    assert (staging / built.root / "include" / "cublas_v2.h").is_file()
    assert not (lib / "stubs" / "libcublas.so").exists()
    # the same packages without the component: the libraries stay out, as before
    plain = tmp_path / "plain"
    plain.mkdir()
    base = [f for f in entry.files if f.role != "component"]
    built = DebianSource().assemble(debian_spec(suite=SUITE), [(f, cache.download_path(f.sha256, f.filename))
                                                             for f in base], plain)  # fmt: skip
    assert not list((plain / built.root).rglob("libcublas*"))


def test_debian_suite_without_the_component_package(mirror: Mirror, tmp_path: Path) -> None:
    m = matrix(tmp_path, debian_spec("curand", suite=SUITE))
    with pytest.raises(ToolchainError, match=r"Debian wmcomp/non-free has no package libcurand10 \(needed for CUDA"):
        lock(m)
