"""A local Bot API server for tests, `make demo` and benchmarks.

`FakeTelegram` speaks the real protocol (`POST /bot<token>/<method>` with urlencoded, multipart
or JSON bodies, answers `{"ok": true, "result": ...}` with Bot API JSON objects, errors as
`{"ok": false, "error_code": ..., "description": ..., "parameters": {...}}` with the same HTTP
status), so a real aiogram `Bot` runs against it unchanged:

    fake = FakeTelegram()
    await fake.start()
    bot = fake.bot()  # = Bot(fake.token, session=AiohttpSession(
                      #       api=TelegramAPIServer.from_base(fake.base_url)))
    alice = fake.user(1001, "Alice")
    await alice.send("/start")
    reply = await alice.next_message()

Behaviour copied from Telegram (see docs/telegram.md):
- getUpdates long-polls up to `timeout` seconds and confirms updates below `offset`; a second
  getUpdates terminates the one in flight with 409 Conflict; getUpdates while a webhook is set
  is a 409 too. With a webhook set, updates are POSTed to it (with the secret header).
- Sending to a chat the fake has never seen is "400 Bad Request: chat not found" (a user must
  have written to the bot first), unless `strict_chats=False`.
- `Message.reply_markup` only ever carries an inline keyboard; reply keyboards stick to the chat
  (see `FakeUser.reply_keyboard`) until a `ReplyKeyboardRemove`.
- Editing a message to identical content is "400 Bad Request: message is not modified".
- Rate limits (opt-in, `rate_limit()`): a global token bucket and a per-chat one (about 1/s
  sustained with a small burst; groups about 20/min) on message-sending methods; beyond them the
  answer is 429 with `retry_after` = whole seconds until the next token.

Ids are deterministic: update ids, callback query ids and file ids count from 1; message ids
count from 1 in each chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import mimetypes
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from aiohttp.web_request import FileField

logger = logging.getLogger(__name__)

DEFAULT_TOKEN = "4242424242:FAKE-telegram-token"
WEBHOOK_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

# Parameters that Telegram types as String even when their value looks like JSON / a number.
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "callback_query_id",
        "data",
        "url",
        "secret_token",
        "parse_mode",
        "language_code",
        "inline_message_id",
        "name",
        "description",
        "short_description",
        "query",
        "title",
        "question",
        "emoji",
        "action",
        "business_connection_id",
        "file_id",
        "ip_address",
        "message_effect_id",
        "custom_title",
        "address",
        "phone_number",
        "first_name",
        "last_name",
        "payload",
        "currency",
        "start_parameter",
        "provider_token",
        "switch_pm_text",
        "switch_pm_parameter",
        "next_offset",
        "shipping_query_id",
        "pre_checkout_query_id",
        "error_message",
    }
)

# Methods that put a message into a chat or change one: the ones Telegram rate-limits.
RATE_LIMITED_METHODS = frozenset(
    {
        "sendmessage",
        "editmessagetext",
        "editmessagecaption",
        "editmessagereplymarkup",
        "editmessagemedia",
        "senddocument",
        "sendphoto",
        "sendlocation",
        "sendmediagroup",
        "copymessage",
        "forwardmessage",
    }
)

_CONFLICT_TERMINATED = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
_CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


class ApiError(Exception):
    """An error answer of the Bot API (HTTP status = error_code)."""

    def __init__(
        self, error_code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _retry_after_error(retry_after: int) -> ApiError:
    return ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


@dataclass(frozen=True)
class FakeFile:
    """A file the bot uploaded (sendDocument and friends)."""

    file_id: str
    filename: str
    content: bytes
    content_type: str


@dataclass
class Call:
    """One Bot API request as the fake received it."""

    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() at arrival
    token: str
    status: int = 200
    description: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> int | str | None:
        value = self.params.get("chat_id")
        return value if isinstance(value, int | str) else None


@dataclass
class _Bucket:
    """Token bucket: `rate` tokens per second, at most `burst` stored."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self) -> float:
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class _RateLimit:
    per_second: float
    global_burst: float
    per_chat_per_second: float
    per_chat_burst: float
    per_group_per_minute: float
    per_group_burst: float


@dataclass
class _Fault:
    remaining: int
    error: ApiError | None  # None: drop the connection without an answer


@dataclass
class _Chat:
    chat: dict[str, Any]
    next_message_id: int = 1
    by_id: dict[int, dict[str, Any]] = field(default_factory=dict)
    bot_messages: list[dict[str, Any]] = field(default_factory=list)
    sent_markup: dict[int, dict[str, Any]] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)
    edits: dict[int, int] = field(default_factory=dict)  # message_id -> successful edits
    reply_keyboard: dict[str, Any] | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def allocate_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


class FakeTelegram:
    """Local Bot API server; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "attn_test_bot",
        bot_first_name: str = "ATTN",
        strict_chats: bool = True,
        check_token: bool = True,
        latency: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.strict_chats = strict_chats
        self.check_token = check_token
        self.latency = latency  # seconds added to every answer (a real API is ~50-100 ms away)
        self._clock = clock

        self.calls: list[Call] = []
        self.sent_messages: list[dict[str, Any]] = []  # every message the bot sent, in order
        self.files: dict[str, FakeFile] = {}
        # Files users sent to the bot (photos, documents), by file_id: the bot may send them
        # on by that id (sendPhoto, sendDocument), as Telegram allows.
        self.user_files: dict[str, dict[str, Any]] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.webhook: dict[str, Any] | None = None
        self.webhook_errors: list[str] = []

        self._chats: dict[int | str, _Chat] = {}
        self._users: dict[int, FakeUser] = {}
        self._forbidden: dict[int | str, str] = {}
        self._paid_refusal: str | None = None
        self._faults: dict[str, list[_Fault]] = {}
        self._rate: _RateLimit | None = None
        self._global_bucket: _Bucket | None = None
        self._chat_buckets: dict[int | str, _Bucket] = {}

        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._next_callback_id = 1
        self._next_file_id = 1
        self._updates_changed = asyncio.Condition()
        self._poll_generation = 0
        self._polls_in_flight = 0
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_pushes: set[asyncio.Task[None]] = set()
        self._webhook_in_flight = 0
        self._calls_changed = asyncio.Condition()
        self._closing = False

        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeTelegram:
        app = web.Application(client_max_size=50 * 1024 * 1024)  # Bot API upload limit
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        # Long polls end at stop() (see _closing), so a short shutdown timeout is enough.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=2048)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self._host = host
        self._client = ClientSession(timeout=ClientTimeout(total=30))
        self._closing = False
        return self

    async def stop(self) -> None:
        self._closing = True
        async with self._updates_changed:
            self._updates_changed.notify_all()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        for task in list(self._webhook_pushes):
            task.cancel()
        if self._webhook_pushes:
            await asyncio.gather(*self._webhook_pushes, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """Base URL for `TelegramAPIServer.from_base(...)`."""
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return f"http://{self._host}:{self._port}"

    def bot(self, **kwargs: Any) -> Bot:
        """A real aiogram Bot talking to this server (close it with `await bot.session.close()`)."""
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.base_url))
        return Bot(self.token, session=session, **kwargs)

    # ------------------------------------------------------------------ simulated users

    def user(
        self,
        user_id: int,
        first_name: str = "User",
        language_code: str | None = "en",
        *,
        last_name: str | None = None,
        username: str | None = None,
    ) -> FakeUser:
        """A Telegram user with a private chat with the bot (same object for the same id)."""
        existing = self._users.get(user_id)
        if existing is not None:
            return existing
        fake_user = FakeUser(self, user_id, first_name, language_code, last_name, username)
        self._users[user_id] = fake_user
        chat: dict[str, Any] = {"id": user_id, "type": "private", "first_name": first_name}
        if last_name:
            chat["last_name"] = last_name
        if username:
            chat["username"] = username
        self._chat(chat)
        return fake_user

    def chat_messages(self, chat_id: int | str) -> list[dict[str, Any]]:
        """The bot's messages in a chat, oldest first (edits applied in place)."""
        chat = self._chats.get(chat_id)
        return list(chat.bot_messages) if chat else []

    def deleted_message_ids(self, chat_id: int | str) -> list[int]:
        chat = self._chats.get(chat_id)
        return list(chat.deleted) if chat else []

    def reply_markup_of(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The reply_markup the bot sent with a message (any kind, not only inline)."""
        chat = self._chats.get(message["chat"]["id"])
        return chat.sent_markup.get(message["message_id"]) if chat else None

    def document_of(self, message: dict[str, Any]) -> FakeFile:
        return self.files[message["document"]["file_id"]]

    # ------------------------------------------------------------------ updates

    async def deliver_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an arbitrary update (an `update_id` is assigned when missing)."""
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, int(update["update_id"])) + 1
        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            payload = update.get(key)
            if isinstance(payload, dict) and isinstance(payload.get("chat"), dict):
                chat = self._chat(payload["chat"])
                if "message_id" in payload:
                    chat.by_id[int(payload["message_id"])] = payload
                    chat.next_message_id = max(chat.next_message_id, payload["message_id"] + 1)
        async with self._updates_changed:
            self._updates.append(update)
            self._updates_changed.notify_all()
        return update

    def new_message_id(self, chat_id: int | str) -> int:
        return self._chats[chat_id].allocate_id()

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return list(self._updates)

    async def wait_updates_consumed(self, timeout: float = 5.0) -> None:
        """Wait until the bot has confirmed (or received by webhook) every queued update."""

        def drained() -> bool:
            return not self._updates and self._webhook_in_flight == 0

        async with self._updates_changed:
            await asyncio.wait_for(self._updates_changed.wait_for(drained), timeout)

    async def post_update_to(
        self, url: str, update: dict[str, Any], secret: str | None = None
    ) -> int:
        """POST one update to a webhook URL as Telegram does; returns the HTTP status."""
        if self._client is None:
            raise RuntimeError("FakeTelegram is not started")
        headers = {WEBHOOK_SECRET_HEADER: secret} if secret else {}
        async with self._client.post(url, json=update, headers=headers) as response:
            await response.read()
            return response.status

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        n: int = 1,
        retry_after: int = 1,
        *,
        error_code: int = 429,
        description: str | None = None,
    ) -> None:
        """Answer the next `n` calls of `method` with an error (429 + retry_after by default)."""
        if error_code == 429:
            error = _retry_after_error(retry_after)
            if description:
                error.description = description
        else:
            error = ApiError(error_code, description or _default_description(error_code))
        self._faults.setdefault(method.lower(), []).append(_Fault(n, error))

    def clear_faults(self) -> None:
        """Forget every fault still queued by `fail_next` / `disconnect_next`."""
        self._faults.clear()

    def disconnect_next(self, method: str, n: int = 1) -> None:
        """Drop the connection of the next `n` calls of `method` without answering."""
        self._faults.setdefault(method.lower(), []).append(_Fault(n, None))

    def forbid_chat(
        self, chat_id: int | str, description: str = "Forbidden: bot was blocked by the user"
    ) -> None:
        self._forbidden[chat_id] = description

    def allow_chat(self, chat_id: int | str) -> None:
        self._forbidden.pop(chat_id, None)

    def rate_limit(
        self,
        per_second: float = 30.0,
        *,
        global_burst: float | None = None,
        per_chat_per_second: float = 1.0,
        per_chat_burst: float = 4.0,
        per_group_per_minute: float = 20.0,
        per_group_burst: float = 5.0,
    ) -> None:
        """Enforce Telegram-like flood limits on message-sending methods."""
        self._rate = _RateLimit(
            per_second=per_second,
            global_burst=global_burst if global_burst is not None else per_second,
            per_chat_per_second=per_chat_per_second,
            per_chat_burst=per_chat_burst,
            per_group_per_minute=per_group_per_minute,
            per_group_burst=per_group_burst,
        )
        self._global_bucket = None
        self._chat_buckets.clear()

    def no_rate_limit(self) -> None:
        self._rate = None

    def refuse_paid_broadcasts(self, description: str = "Bad Request: not enough stars") -> None:
        """Answer every message sent with `allow_paid_broadcast` with a 400, as Telegram does
        for a bot that may not use paid broadcasts or whose Stars balance is too low."""
        self._paid_refusal = description

    # ------------------------------------------------------------------ assertions

    def calls_to(self, method: str, *, chat_id: int | str | None = None) -> list[Call]:
        wanted = method.lower()
        return [
            c
            for c in self.calls
            if c.method.lower() == wanted and (chat_id is None or c.chat_id == chat_id)
        ]

    def call_count(self, method: str, *, chat_id: int | str | None = None) -> int:
        return len(self.calls_to(method, chat_id=chat_id))

    async def wait_for_calls(self, method: str, n: int, timeout: float = 5.0) -> list[Call]:
        """Wait until at least `n` calls of `method` arrived."""
        async with self._calls_changed:
            await asyncio.wait_for(
                self._calls_changed.wait_for(lambda: self.call_count(method) >= n), timeout
            )
        return self.calls_to(method)

    async def wait_for_sent(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until the bot has sent at least `n` messages in total."""
        async with self._calls_changed:
            await asyncio.wait_for(
                self._calls_changed.wait_for(lambda: len(self.sent_messages) >= n), timeout
            )
        return list(self.sent_messages)

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        method = request.match_info["method"]
        params = await self._read_params(request)
        call = Call(method=method, params=params, at=time.monotonic(), token=token)
        self.calls.append(call)
        try:
            if self.check_token and token != self.token:
                raise ApiError(401, "Unauthorized")
            self._inject_faults(method, request)
            if self.latency:
                await asyncio.sleep(self.latency)
            result = await self._dispatch(method.lower(), params)
        except ApiError as exc:
            call.status = exc.error_code
            call.description = exc.description
            await self._notify_calls()
            return web.json_response(exc.body(), status=exc.error_code)
        await self._notify_calls()
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if self.check_token and request.match_info["token"] != self.token:
            raise web.HTTPUnauthorized()
        path = request.match_info["path"]
        file_id = path.rsplit("/", 1)[-1]
        stored = self.files.get(file_id)
        if stored is None:
            raise web.HTTPNotFound()
        return web.Response(body=stored.content, content_type=stored.content_type)

    async def _notify_calls(self) -> None:
        async with self._calls_changed:
            self._calls_changed.notify_all()

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _decode_value(k, v) for k, v in request.query.items()}
        if request.content_type == "application/json":
            body = await request.read()
            if body:
                params.update(json.loads(body))
            return params
        if request.method != "POST" or not request.can_read_body:
            return params
        form = await request.post()
        files: dict[str, FileField] = {}
        for key, value in form.items():
            if isinstance(value, FileField):
                files[key] = value
            else:
                params[key] = _decode_value(key, str(value))
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                attached = files.pop(value.removeprefix("attach://"), None)
                if attached is not None:
                    params[key] = self._store_file(attached)
        for key, attached in files.items():  # a file sent directly under the parameter name
            params[key] = self._store_file(attached)
        return params

    def _store_file(self, upload: FileField) -> FakeFile:
        file_id = f"BQACAgFAKE{self._next_file_id:06d}"
        self._next_file_id += 1
        stored = FakeFile(
            file_id=file_id,
            filename=upload.filename,
            content=upload.file.read(),
            content_type=_guess_type(upload),
        )
        self.files[file_id] = stored
        return stored

    def _inject_faults(self, method: str, request: web.Request) -> None:
        faults = self._faults.get(method.lower())
        if not faults:
            return
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.pop(0)
        if fault.error is None:
            if request.transport is not None:
                request.transport.abort()
            raise ApiError(599, "connection dropped by the fake")  # never reaches the client
        raise fault.error

    # ------------------------------------------------------------------ Bot API methods

    async def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        if method in RATE_LIMITED_METHODS:
            chat_id = params.get("chat_id")
            if chat_id is not None:
                self._check_chat(chat_id)
            paid = bool(params.get("allow_paid_broadcast"))
            if paid and self._paid_refusal is not None:
                raise ApiError(400, self._paid_refusal)
            self._check_rate(chat_id, paid=paid)
        handler = self._methods.get(method)
        if handler is None:
            return True  # unknown to the fake: recorded, answered like a plain success
        return await handler(self, params)

    def _check_chat(self, chat_id: int | str) -> None:
        forbidden = self._forbidden.get(chat_id)
        if forbidden is not None:
            raise ApiError(403, forbidden)
        if self.strict_chats and chat_id not in self._chats:
            raise ApiError(400, "Bad Request: chat not found")

    def _check_rate(self, chat_id: int | str | None, *, paid: bool = False) -> None:
        """A paid broadcast (`allow_paid_broadcast`, Bot API 7.11) is outside the bot's 30/s
        (Telegram lets it go up to 1,000/s for Stars); the per-chat limits still hold."""
        rate = self._rate
        if rate is None:
            return
        now = time.monotonic()
        if self._global_bucket is None:
            burst = rate.global_burst
            self._global_bucket = _Bucket(rate.per_second, burst, burst, now)
        buckets = [] if paid else [self._global_bucket]
        if chat_id is not None:
            bucket = self._chat_buckets.get(chat_id)
            if bucket is None:
                is_group = isinstance(chat_id, str) or chat_id < 0
                if is_group:
                    per_second, burst = rate.per_group_per_minute / 60.0, rate.per_group_burst
                else:
                    per_second, burst = rate.per_chat_per_second, rate.per_chat_burst
                bucket = _Bucket(per_second, burst, burst, now)
                self._chat_buckets[chat_id] = bucket
            buckets.append(bucket)
        for bucket in buckets:
            bucket.refill(now)
        wait = max((bucket.wait_time() for bucket in buckets), default=0.0)
        if wait > 0:
            raise _retry_after_error(max(1, math.ceil(wait)))
        for bucket in buckets:
            bucket.tokens -= 1

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _chat(self, chat: dict[str, Any]) -> _Chat:
        state = self._chats.get(chat["id"])
        if state is None:
            state = _Chat(chat=dict(chat))
            self._chats[chat["id"]] = state
        return state

    def _chat_for_send(self, chat_id: Any) -> _Chat:
        state = self._chats.get(chat_id)
        if state is None:
            if self.strict_chats:
                raise ApiError(400, "Bad Request: chat not found")
            kind = "private" if isinstance(chat_id, int) and chat_id > 0 else "group"
            chat: dict[str, Any] = {"id": chat_id, "type": kind}
            if kind == "private":
                chat["first_name"] = f"User {chat_id}"
            else:
                chat["title"] = f"Chat {chat_id}"
            state = self._chat(chat)
        return state

    def _find_message(self, params: dict[str, Any], missing: str) -> tuple[_Chat, dict[str, Any]]:
        chat_id = params.get("chat_id")
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        state = self._chats.get(chat_id)
        if state is None:
            raise ApiError(400, "Bad Request: chat not found")
        message = state.by_id.get(int(params.get("message_id", 0)))
        if message is None:
            raise ApiError(400, f"Bad Request: {missing}")
        return state, message

    async def _post_bot_message(
        self, state: _Chat, params: dict[str, Any], content: dict[str, Any]
    ) -> dict[str, Any]:
        message_id = state.allocate_id()
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": state.chat,
            "date": int(self._clock()),
            **content,
        }
        reply_to = params.get("reply_parameters") or {}
        reply_to_id = reply_to.get("message_id") or params.get("reply_to_message_id")
        if reply_to_id and int(reply_to_id) in state.by_id:
            message["reply_to_message"] = dict(state.by_id[int(reply_to_id)])
            message["reply_to_message"].pop("reply_to_message", None)
        markup = params.get("reply_markup")
        if isinstance(markup, dict):
            state.sent_markup[message_id] = markup
            if "inline_keyboard" in markup:
                message["reply_markup"] = markup
            elif "keyboard" in markup:
                state.reply_keyboard = markup
            elif markup.get("remove_keyboard"):
                state.reply_keyboard = None
        state.by_id[message_id] = message
        state.bot_messages.append(message)
        self.sent_messages.append(message)
        async with state.changed:
            state.changed.notify_all()
        return message

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            raise ApiError(409, _CONFLICT_WEBHOOK)
        offset = int(params.get("offset", 0) or 0)
        limit = max(1, min(100, int(params.get("limit", 100) or 100)))
        timeout = max(0.0, float(params.get("timeout", 0) or 0))
        allowed = params.get("allowed_updates")

        async with self._updates_changed:
            if offset > 0:  # confirm everything below offset
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset < 0:
                self._updates = self._updates[offset:]
            # Telegram lets only one getUpdates run: a new one terminates the one in flight.
            self._poll_generation += 1
            generation = self._poll_generation
            self._updates_changed.notify_all()

            def selected() -> list[dict[str, Any]]:
                chosen = [u for u in self._updates if _allowed(u, allowed)][:limit]
                return chosen

            def ready() -> bool:
                return (
                    bool(selected())
                    or generation != self._poll_generation
                    or self._closing
                    or self.webhook is not None
                )

            self._polls_in_flight += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._updates_changed.wait_for(ready), timeout)
            finally:
                self._polls_in_flight -= 1
            if generation != self._poll_generation:
                raise ApiError(409, _CONFLICT_TERMINATED)
            if self.webhook is not None:
                raise ApiError(409, _CONFLICT_WEBHOOK)
            # updates of types not asked for are dropped, as Telegram does
            self._updates = [u for u in self._updates if _allowed(u, allowed)]
            return selected()

    async def _send_message(self, params: dict[str, Any]) -> Any:
        state = self._chat_for_send(params.get("chat_id"))
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        content: dict[str, Any] = {"text": text}
        if params.get("entities"):
            content["entities"] = params["entities"]
        return await self._post_bot_message(state, params, content)

    async def _send_photo(self, params: dict[str, Any]) -> Any:
        state = self._chat_for_send(params.get("chat_id"))
        photo = params.get("photo")
        known = self.user_files.get(photo) if isinstance(photo, str) else None
        if known is None or known["kind"] != "photo":
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        content: dict[str, Any] = {"photo": [dict(known["size"])]}
        if params.get("caption"):
            content["caption"] = params["caption"]
        return await self._post_bot_message(state, params, content)

    async def _send_document(self, params: dict[str, Any]) -> Any:
        state = self._chat_for_send(params.get("chat_id"))
        document = params.get("document")
        sent = self.user_files.get(document) if isinstance(document, str) else None
        if sent is not None and sent["kind"] == "document":
            content = {"document": dict(sent["document"])}
            if params.get("caption"):
                content["caption"] = params["caption"]
            return await self._post_bot_message(state, params, content)
        if isinstance(document, str) and document in self.files:
            document = self.files[document]
        if not isinstance(document, FakeFile):
            raise ApiError(400, "Bad Request: there is no document in the request")
        content: dict[str, Any] = {
            "document": {
                "file_id": document.file_id,
                "file_unique_id": f"U{document.file_id}",
                "file_name": document.filename,
                "mime_type": document.content_type,
                "file_size": len(document.content),
            }
        }
        if params.get("caption"):
            content["caption"] = params["caption"]
        return await self._post_bot_message(state, params, content)

    async def _edit_message_text(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True
        state, message = self._find_message(params, "message to edit not found")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        markup = params.get("reply_markup")
        new_markup = markup if isinstance(markup, dict) and "inline_keyboard" in markup else None
        if message.get("text") == text and message.get("reply_markup") == new_markup:
            raise ApiError(400, _NOT_MODIFIED)
        return await self._apply_edit(state, message, text=text, markup=new_markup)

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True
        state, message = self._find_message(params, "message to edit not found")
        markup = params.get("reply_markup")
        new_markup = markup if isinstance(markup, dict) and "inline_keyboard" in markup else None
        if message.get("reply_markup") == new_markup:
            raise ApiError(400, _NOT_MODIFIED)
        return await self._apply_edit(state, message, text=None, markup=new_markup)

    async def _apply_edit(
        self,
        state: _Chat,
        message: dict[str, Any],
        *,
        text: str | None,
        markup: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if message.get("from", {}).get("id") != self.bot_id:
            raise ApiError(400, "Bad Request: message can't be edited")
        if text is not None:
            message["text"] = text
        if markup is None:
            message.pop("reply_markup", None)
            state.sent_markup.pop(message["message_id"], None)
        else:
            message["reply_markup"] = markup
            state.sent_markup[message["message_id"]] = markup
        message["edit_date"] = int(self._clock())
        state.edits[message["message_id"]] = state.edits.get(message["message_id"], 0) + 1
        async with state.changed:
            state.changed.notify_all()
        return message

    async def _delete_message(self, params: dict[str, Any]) -> Any:
        state, message = self._find_message(params, "message to delete not found")
        del state.by_id[message["message_id"]]
        state.deleted.append(message["message_id"])
        async with state.changed:
            state.changed.notify_all()
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id", ""))
        if query_id in self.callback_answers:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self.callback_answers[query_id] = params
        async with self._calls_changed:
            self._calls_changed.notify_all()
        return True

    async def _set_my_commands(self, params: dict[str, Any]) -> Any:
        scope = params.get("scope") or {"type": "default"}
        key = (str(scope.get("type", "default")), str(params.get("language_code") or ""))
        self.commands[key] = list(params.get("commands") or [])
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> Any:
        scope = params.get("scope") or {"type": "default"}
        key = (str(scope.get("type", "default")), str(params.get("language_code") or ""))
        return self.commands.get(key, [])

    async def _delete_my_commands(self, params: dict[str, Any]) -> Any:
        scope = params.get("scope") or {"type": "default"}
        key = (str(scope.get("type", "default")), str(params.get("language_code") or ""))
        self.commands.pop(key, None)
        return True

    async def _set_webhook(self, params: dict[str, Any]) -> Any:
        url = params.get("url") or ""
        if not url:
            return await self._delete_webhook(params)
        if not str(url).startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = {
            "url": url,
            "secret_token": params.get("secret_token"),
            "max_connections": int(params.get("max_connections") or 40),
            "allowed_updates": params.get("allowed_updates"),
        }
        if self._webhook_task is None:
            self._webhook_task = asyncio.create_task(self._webhook_loop())
        async with self._updates_changed:  # a long poll in flight ends with 409
            self._updates_changed.notify_all()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> Any:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = None
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates) + self._webhook_in_flight,
        }
        if self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
            if self.webhook.get("allowed_updates"):
                info["allowed_updates"] = self.webhook["allowed_updates"]
        if self.webhook_errors:
            info["last_error_date"] = int(self._clock())
            info["last_error_message"] = self.webhook_errors[-1]
        return info

    async def _get_file(self, params: dict[str, Any]) -> Any:
        stored = self.files.get(str(params.get("file_id")))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": f"U{stored.file_id}",
            "file_size": len(stored.content),
            "file_path": f"documents/{stored.file_id}",
        }

    async def _ok(self, params: dict[str, Any]) -> Any:
        return True

    _methods: ClassVar[dict[str, Callable[[FakeTelegram, dict[str, Any]], Any]]] = {
        "getme": _get_me,
        "getupdates": _get_updates,
        "sendmessage": _send_message,
        "senddocument": _send_document,
        "sendphoto": _send_photo,
        "editmessagetext": _edit_message_text,
        "editmessagereplymarkup": _edit_message_reply_markup,
        "deletemessage": _delete_message,
        "answercallbackquery": _answer_callback_query,
        "setmycommands": _set_my_commands,
        "getmycommands": _get_my_commands,
        "deletemycommands": _delete_my_commands,
        "setwebhook": _set_webhook,
        "deletewebhook": _delete_webhook,
        "getwebhookinfo": _get_webhook_info,
        "getfile": _get_file,
        "sendchataction": _ok,
        "close": _ok,
        "logout": _ok,
    }

    # ------------------------------------------------------------------ webhook delivery

    async def _webhook_loop(self) -> None:
        while True:
            async with self._updates_changed:
                await self._updates_changed.wait_for(lambda: bool(self._updates))
                webhook = self.webhook
                if webhook is None:
                    return
                while self._webhook_in_flight >= webhook["max_connections"]:
                    await self._updates_changed.wait()
                update = self._updates.pop(0)
                self._webhook_in_flight += 1
            task = asyncio.create_task(self._push_update(webhook, update))
            self._webhook_pushes.add(task)
            task.add_done_callback(self._webhook_pushes.discard)

    async def _push_update(self, webhook: dict[str, Any], update: dict[str, Any]) -> None:
        try:
            for attempt in range(3):  # Telegram keeps retrying; three tries is plenty here
                try:
                    status = await self.post_update_to(
                        webhook["url"], update, webhook.get("secret_token")
                    )
                except (ClientError, TimeoutError) as exc:
                    self.webhook_errors.append(f"Connection failed: {exc}")
                else:
                    if 200 <= status < 300:
                        return
                    self.webhook_errors.append(f"Wrong response from the webhook: {status}")
                await asyncio.sleep(0.2 * (attempt + 1))
        finally:
            async with self._updates_changed:
                self._webhook_in_flight -= 1
                self._updates_changed.notify_all()


def _guess_type(upload: FileField) -> str:
    # Telegram derives the MIME type from the file name when the client sends none.
    declared = upload.content_type
    if declared and declared != "application/octet-stream":
        return declared
    return mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"


def _default_description(error_code: int) -> str:
    return {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(error_code, f"Error {error_code}")


def _decode_value(key: str, value: str) -> Any:
    """Form values as Telegram reads them: JSON-serialized objects, numbers and booleans."""
    if key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _allowed(update: dict[str, Any], allowed: Iterable[str] | None) -> bool:
    if not allowed:
        return True
    return any(kind in update for kind in allowed)


def _command_entities(text: str) -> list[dict[str, Any]]:
    if not text.startswith("/"):
        return []
    length = len(text.split(maxsplit=1)[0]) if text.strip() else 0
    return [{"type": "bot_command", "offset": 0, "length": length}] if length > 1 else []


class FakeUser:
    """One Telegram user talking to the bot in a private chat."""

    def __init__(
        self,
        fake: FakeTelegram,
        user_id: int,
        first_name: str,
        language_code: str | None,
        last_name: str | None,
        username: str | None,
    ) -> None:
        self.fake = fake
        self.id = user_id
        self.first_name = first_name
        self.language_code = language_code
        self.last_name = last_name
        self.username = username
        self._read = 0  # index of the next unread bot message

    @property
    def chat_id(self) -> int:
        return self.id

    def as_user(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    @property
    def _state(self) -> _Chat:
        return self.fake._chats[self.id]

    def _message(self, content: dict[str, Any]) -> dict[str, Any]:
        state = self._state
        return {
            "message_id": state.allocate_id(),
            "from": self.as_user(),
            "chat": state.chat,
            "date": int(self.fake._clock()),
            **content,
        }

    async def send(self, text: str) -> dict[str, Any]:
        """Send a text message to the bot; returns the Message as the bot will see it."""
        content: dict[str, Any] = {"text": text}
        if entities := _command_entities(text):
            content["entities"] = entities
        message = self._message(content)
        await self.fake.deliver_update({"message": message})
        return message

    async def send_photo(
        self, caption: str | None = None, *, file_id: str = "photo-1", file_size: int = 2048
    ) -> dict[str, Any]:
        """Send a photo, with `caption` under it when given."""
        size = {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "width": 90,
            "height": 90,
            "file_size": file_size,
        }
        self.fake.user_files[file_id] = {"kind": "photo", "size": size}
        content: dict[str, Any] = {"photo": [size]}
        if caption is not None:
            content["caption"] = caption
        message = self._message(content)
        await self.fake.deliver_update({"message": message})
        return message

    async def send_document(
        self, file_name: str, mime_type: str, file_size: int, *, file_id: str | None = None
    ) -> dict[str, Any]:
        """Send a file as a document (Telegram reports its name, MIME type and size)."""
        file_id = file_id or f"doc-{file_name}"
        document = {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": file_size,
        }
        self.fake.user_files[file_id] = {"kind": "document", "document": document}
        message = self._message({"document": document})
        await self.fake.deliver_update({"message": message})
        return message

    async def send_location(
        self,
        latitude: float,
        longitude: float,
        *,
        horizontal_accuracy: float | None = None,
        forwarded_from: dict[str, Any] | None = None,
        age_seconds: float = 0.0,
        via_bot: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Share a location; `age_seconds` back-dates the message's `date` (a stale one);
        `via_bot` makes it a result chosen from an inline bot."""
        location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if horizontal_accuracy is not None:
            location["horizontal_accuracy"] = horizontal_accuracy
        content: dict[str, Any] = {"location": location}
        if forwarded_from is not None:
            content["forward_origin"] = {
                "type": "user",
                "date": int(self.fake._clock()),
                "sender_user": forwarded_from,
            }
        if via_bot is not None:
            content["via_bot"] = via_bot
        message = self._message(content)
        message["date"] = int(self.fake._clock() - age_seconds)
        await self.fake.deliver_update({"message": message})
        return message

    async def edit(self, message: dict[str, Any], text: str) -> dict[str, Any]:
        """Edit one of the user's own messages (delivers an edited_message update)."""
        edited = {**message, "text": text, "edit_date": int(self.fake._clock())}
        await self.fake.deliver_update({"edited_message": edited})
        return edited

    async def click(self, message: dict[str, Any], data: str) -> str:
        """Press an inline button carrying `data` under a bot message; returns the query id."""
        query_id = str(self.fake._next_callback_id)
        self.fake._next_callback_id += 1
        current = self._state.by_id.get(message["message_id"], message)
        query = {
            "id": query_id,
            "from": self.as_user(),
            "message": current,
            "chat_instance": f"ci{self.id}",
            "data": data,
        }
        await self.fake.deliver_update({"callback_query": query})
        return query_id

    async def click_button(self, text: str, message: dict[str, Any] | None = None) -> str:
        """Press the inline button labelled `text` (on the last bot message by default)."""
        target = message or self.last_message
        if target is None:
            raise AssertionError(f"user {self.id} has no message with buttons")
        for button in self.inline_buttons(target):
            if button.get("text") == text and "callback_data" in button:
                return await self.click(target, button["callback_data"])
        labels = [b.get("text") for b in self.inline_buttons(target)]
        raise AssertionError(f"no button {text!r} under message; buttons: {labels}")

    async def callback_answer(self, query_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The bot's answerCallbackQuery parameters for a click."""
        fake = self.fake
        async with fake._calls_changed:
            await asyncio.wait_for(
                fake._calls_changed.wait_for(lambda: query_id in fake.callback_answers), timeout
            )
        return fake.callback_answers[query_id]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message the bot sent to this user, oldest first (edits applied)."""
        return self.fake.chat_messages(self.id)

    @property
    def last_message(self) -> dict[str, Any] | None:
        messages = self.messages
        return messages[-1] if messages else None

    @property
    def unread(self) -> list[dict[str, Any]]:
        return self.messages[self._read :]

    def mark_read(self) -> None:
        self._read = len(self.messages)

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Wait until `predicate()` holds; re-checked whenever this chat changes."""
        state = self._state
        try:
            async with state.changed:
                await asyncio.wait_for(state.changed.wait_for(predicate), timeout)
        except TimeoutError:
            texts = [m.get("text") or m.get("caption") for m in self.messages]
            raise AssertionError(
                f"user {self.id}: timed out after {timeout}s waiting for {what}; "
                f"bot messages so far: {texts}"
            ) from None

    async def next_message(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next bot message to this user not yet returned by next_message()."""
        await self.wait_until(
            lambda: len(self._state.bot_messages) > self._read, timeout, "the next message"
        )
        message = self._state.bot_messages[self._read]
        self._read += 1
        return message

    async def next_messages(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        await self.wait_until(
            lambda: len(self._state.bot_messages) >= self._read + n, timeout, f"{n} messages"
        )
        messages = self._state.bot_messages[self._read : self._read + n]
        self._read += n
        return messages

    async def wait_edit(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Wait until a bot message is edited after this call; returns its new state."""
        state = self._state
        message_id = message["message_id"]
        before = state.edits.get(message_id, 0)
        await self.wait_until(
            lambda: state.edits.get(message_id, 0) > before,
            timeout,
            f"an edit of message {message_id}",
        )
        return state.by_id.get(message_id, message)

    @staticmethod
    def inline_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
        """The inline keyboard of a bot message, flattened row by row."""
        markup = message.get("reply_markup") or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]

    @property
    def reply_keyboard(self) -> list[list[str]] | None:
        """Labels of the reply keyboard the bot left in this chat, or None."""
        markup = self._state.reply_keyboard
        if markup is None:
            return None
        return [
            [b if isinstance(b, str) else str(b.get("text")) for b in row]
            for row in markup.get("keyboard", [])
        ]

    @property
    def deleted_message_ids(self) -> list[int]:
        return self.fake.deleted_message_ids(self.id)
