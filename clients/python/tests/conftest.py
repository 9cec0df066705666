"""Starts the real gathering-bridge (BRIDGE_BIN) on free ports for the tests, and always stops it.
``tls_certs`` makes a throwaway CA and a server certificate for it (``Bridge(tls=...)``: wss://).
``redis_server`` starts a real redis-server on a free port, for bridges sharing a broker."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from threading import Thread
from typing import Iterator, List, NamedTuple, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "clients" / "python"))


def bridge_binary() -> str:
    env = os.environ.get("BRIDGE_BIN")
    if env:
        if not Path(env).exists():
            pytest.fail(f"BRIDGE_BIN={env} does not exist")
        return env
    for d in ("build/clients", "build/test", "build/release", "build/asan"):
        p = REPO / d / "src/app/gathering-bridge"
        if p.exists():
            return str(p)
    pytest.fail("set BRIDGE_BIN to the gathering-bridge binary (ctest does)")


class TlsCerts(NamedTuple):
    """PEM files: a CA, and a server certificate from it for localhost/127.0.0.1 (+ its key)."""

    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server against this CA only (not the system trust store)."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls_certs(directory: Path) -> TlsCerts:
    """Generates a CA and a localhost/127.0.0.1 server certificate with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "1", "-subj", "/CN=gathering-bridge python test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "1", "-extfile", "server.ext"],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout.decode(errors='replace')}")
    return TlsCerts(directory / "ca.pem", directory / "server.pem", directory / "server.key")


class Bridge:
    """One bridge process. ``ws_port``/``grpc_port`` come from --ready_file. With ``tls`` the
    WebSocket port serves wss:// (``ws_url`` is ``wss://...``); gRPC stays plaintext."""

    def __init__(self, ws_port: int = 0, grpc_port: int = 0, args: Optional[List[str]] = None,
                 ready_timeout: float = 15.0, tls: Optional[TlsCerts] = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bridge-py-")
        ready = Path(self._dir.name) / "ready.json"
        tls_args = [f"--ws_tls_cert_file={tls.cert}", f"--ws_tls_key_file={tls.key}"] if tls else []
        cmd = [bridge_binary(), "--host=127.0.0.1", f"--ws_port={ws_port}", f"--grpc_port={grpc_port}",
               f"--ready_file={ready}", *tls_args, *(args or [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._log: deque = deque(maxlen=200)
        Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + ready_timeout
        info = None
        while info is None:
            if ready.exists():
                try:
                    info = json.loads(ready.read_text())
                    break
                except ValueError:
                    pass
            if self.proc.poll() is not None:
                self._dir.cleanup()
                raise RuntimeError(f"bridge exited with {self.proc.returncode} before ready: {cmd}\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"bridge not ready within {ready_timeout} s: {cmd}\n{self.log()}")
            time.sleep(0.02)  # polling the ready file (a condition), bounded by the deadline
        self.ws_port = int(info["ws_port"])
        self.grpc_port = int(info["grpc_port"])
        self.ws_url = f"{'wss' if tls else 'ws'}://127.0.0.1:{self.ws_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.append(line.decode(errors="replace").rstrip())
            if os.environ.get("BRIDGE_LOG"):
                print(self._log[-1], file=sys.stderr)

    def log(self) -> str:
        return "\n".join(self._log)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM, wait (SIGKILL after ``timeout``); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._dir.cleanup()


class RedisServer:
    """A redis-server on a free loopback port, no persistence, in a temporary directory (as
    tests/broker/redis_server.cc starts it for the C++ tests). ``url`` is the bridge's --broker."""

    def __init__(self, ready_timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (scripts/setup.sh installs it)")
        self._dir = tempfile.TemporaryDirectory(prefix="bridge-py-redis-")
        self.proc: Optional[subprocess.Popen] = None
        self._log: deque = deque(maxlen=100)
        for _ in range(10):  # redis cannot bind port 0: probe one, retry when another took it
            self.port = _free_port()
            cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", self._dir.name, "--daemonize", "no"]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if self._wait_ready(ready_timeout):
                break
            self._stop_proc()
            if not any("in use" in line for line in self._log):
                self._dir.cleanup()
                raise RuntimeError(f"redis-server did not start: {cmd}\n{self.log()}")
        else:
            self._dir.cleanup()
            raise RuntimeError(f"redis-server found no free port\n{self.log()}")
        self.url = f"redis://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float) -> bool:
        """Reads the log until redis says it accepts connections (False if it exited first)."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        ready = False

        def read() -> None:
            nonlocal ready
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                self._log.append(line)
                if "Ready to accept connections" in line:
                    ready = True
                    break

        reader = Thread(target=read, daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if ready:
            # Keep draining its output so that it never blocks on a full pipe.
            Thread(target=lambda: [self._log.append(l.decode(errors="replace").rstrip()) for l in self.proc.stdout],
                   daemon=True).start()
        return ready

    def log(self) -> str:
        return "\n".join(self._log)

    def _stop_proc(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self._stop_proc()
        self._dir.cleanup()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for this test (skipped where it is not installed), always stopped."""
    r = RedisServer()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="session")
def bridge() -> Iterator[Bridge]:
    b = Bridge()
    try:
        yield b
    finally:
        code = b.stop()
    assert code == 0, f"bridge exit code on SIGTERM: {code}\n{b.log()}"


@pytest.fixture(scope="session")
def tls_certs() -> Iterator[TlsCerts]:
    """A throwaway CA + server certificate (localhost, 127.0.0.1) for ``start_bridge(tls=...)``,
    deleted after the session."""
    with tempfile.TemporaryDirectory(prefix="bridge-py-tls-") as d:
        yield make_tls_certs(Path(d))


@pytest.fixture
def start_bridge() -> Iterator:
    """``start(ws_port=0, grpc_port=0, args=None, tls=None)`` starts a bridge; all are stopped
    (SIGTERM, wait) after the test."""
    started: List[Bridge] = []

    def start(**kw) -> Bridge:
        b = Bridge(**kw)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


_seq = 0


@pytest.fixture
def channel(request) -> str:
    global _seq
    _seq += 1
    return f"circles/py-{os.getpid()}-{int(time.time() * 1000)}-{_seq}"
