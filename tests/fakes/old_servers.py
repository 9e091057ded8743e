"""Servers that look older than they are, for the start-up version check.

- `OldPostgresProxy`: a TCP proxy in front of the real PostgreSQL that rewrites the
  `server_version` ParameterStatus message of the startup phase (the value asyncpg reads into
  `get_server_version()`); everything else passes through byte for byte.
- `OldRedisServer`: a minimal Redis speaking RESP2 whose `INFO` reports an old `redis_version`.

Both bind 127.0.0.1 on a free port and run on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Self

# PostgreSQL protocol: the request codes a client sends before the startup message.
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class _Server:
    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._client(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self._tasks.discard(task)
                writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()


class OldPostgresProxy(_Server):
    def __init__(self, *, upstream_host: str, upstream_port: int, version: str) -> None:
        super().__init__()
        self._upstream = (upstream_host, upstream_port)
        self._version = version.encode()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Refuse encryption so the stream stays readable; the client then sends its startup.
        while True:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            if length == 8 and code in (_SSL_REQUEST, _GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            break
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        try:
            up_writer.write(head)
            await up_writer.drain()
            await asyncio.gather(self._pipe(reader, up_writer), self._rewrite(up_reader, writer))
        finally:
            up_writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def _rewrite(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                kind = await reader.readexactly(1)
            except asyncio.IncompleteReadError:
                writer.close()
                return
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            if kind == b"S":
                name, _, _rest = body.partition(b"\0")
                if name == b"server_version":
                    body = name + b"\0" + self._version + b"\0"
            writer.write(kind + struct.pack("!i", len(body) + 4) + body)
            await writer.drain()


class OldRedisServer(_Server):
    """Answers PING, INFO, SELECT and CLIENT; HELLO (RESP3) as Redis >= 6.0 does, unless older."""

    def __init__(self, *, version: str) -> None:
        super().__init__()
        self._version = version
        self._has_hello = tuple(int(p) for p in version.split(".")[:1]) >= (6,)
        self.commands: list[str] = []  # every command name received, in order

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            command = await self._read_command(reader)
            name = command[0].upper() if command else ""
            self.commands.append(name)
            if name == "PING":
                reply = b"+PONG\r\n"
            elif name == "INFO":
                text = f"# Server\r\nredis_version:{self._version}\r\nprocess_id:1\r\n".encode()
                reply = b"$%d\r\n%s\r\n" % (len(text), text)
            elif name == "HELLO" and self._has_hello:
                fields = [("server", "redis"), ("version", self._version), ("proto", 3)]
                reply = b"%%%d\r\n" % len(fields)
                for key, value in fields:
                    reply += b"+%s\r\n" % key.encode()
                    reply += (
                        (b":%d\r\n" % value)
                        if isinstance(value, int)
                        else (b"+%s\r\n" % str(value).encode())
                    )
            elif name in {"SELECT", "CLIENT"}:
                reply = b"+OK\r\n"
            else:
                reply = f"-ERR unknown command '{name}'\r\n".encode()
            writer.write(reply)
            await writer.drain()

    @staticmethod
    async def _read_command(reader: asyncio.StreamReader) -> list[str]:
        line = await reader.readuntil(b"\r\n")
        if not line.startswith(b"*"):
            return line.decode().split()  # inline command
        parts: list[str] = []
        for _ in range(int(line[1:-2])):
            size = int((await reader.readuntil(b"\r\n"))[1:-2])
            parts.append((await reader.readexactly(size + 2))[:-2].decode())
        return parts
