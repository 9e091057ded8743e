"""The bot in-process, driven as a user drives it: what a handler test reads and clicks.

The project's real app (bot/app.py `build_app`: every middleware, router, service and store,
real PostgreSQL and Redis, the portal client against the local Aksis) gets its updates through
`Dispatcher.feed_update`, and its `Bot` a session that keeps every Bot API call in memory and
answers it as Telegram would (a `Message` for sendMessage and editMessageText, `True` for
answerCallbackQuery and deleteMessage, ...). Nothing goes over HTTP to a Bot API:

    async with chat_client(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as client:
        teacher, student = client.user(100, "Elif"), client.user(201, "Ayşe")
        await client.login(teacher, "teacher1")
        await client.login(student, "student1")
        code, status = await client.start_session(teacher)  # status: the message with the code
        assert "checked in" in (await student.send(code)).text
        closed = await teacher.click("🔒 End session", on=status)
        assert "is closed" in closed.text

(tests/handlers/conftest.py serves it as the `client` fixture.)

`send`, `click` and `location` return the `Replies` the user got for that update: the messages
sent to their chat, the messages edited there, and the answer to their button press. The answer
queue (bot/answers.py) and the outbox worker (bot/delivery.py) run as in production, so a reply
that goes through them is waited for: until the answer queue is idle and the chat has been
quiet for a moment, or, given `until`, until the replies satisfy it (a login's result comes
from the login worker, later than the update's handler returns).

The HTTP fake Bot API (tests/fakes/telegram_server.py, tests/harness.py) stays the tool for
what this leaves out on purpose: pacing against Telegram's limits, polling and webhooks, and
the bot as a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.enums import ParseMode
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    Chat,
    Document,
    InlineKeyboardMarkup,
    Location,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from aiogram.types import User as TelegramUser

from bot.app import App, build_app
from bot.config import Settings, load_settings
from services.aksis import AksisClient
from tests.fakes.aksis_server import FakeAksis
from tests.harness import CODE, PASSWORD, flush_redis, reset_database

TOKEN = "4343434343:in-process-client-token"
# A chat that has been this long without a new call has got what its update caused.
QUIET_SECONDS = 0.05
# Methods whose result is the message they sent or edited.
_MESSAGE_METHODS = frozenset(
    {
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "sendLocation",
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageCaption",
    }
)


@dataclass(frozen=True)
class Button:
    text: str
    callback_data: str | None = None
    url: str | None = None
    web_app: str | None = None


@dataclass
class Reply:
    """One thing the user saw: a message sent or edited in their chat (`method`
    sendMessage, editMessageText, sendDocument, ...) or the answer to their button press
    (answerCallbackQuery: `text` and `alert`)."""

    method: str
    chat_id: int
    message_id: int | None
    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    keyboard: list[list[str]] = field(default_factory=list)  # a reply keyboard's labels
    alert: bool = False
    document: tuple[str, bytes] | None = None  # (file name, content)

    @property
    def labels(self) -> list[str]:
        return [button.text for row in self.buttons for button in row]

    def button(self, text_or_data: str) -> Button | None:
        for row in self.buttons:
            for button in row:
                if text_or_data in (button.text, button.callback_data):
                    return button
        return None


class Replies(list[Reply]):
    """The replies to one update, in the order the bot made them."""

    @property
    def text(self) -> str:
        """Every message's text, the callback answer's too, one paragraph each."""
        return "\n\n".join(reply.text for reply in self if reply.text)

    @property
    def messages(self) -> list[Reply]:
        return [reply for reply in self if reply.method != "answerCallbackQuery"]

    @property
    def answer(self) -> Reply | None:
        """The answer to the button press (a toast, or an alert when `alert`)."""
        return next((r for r in self if r.method == "answerCallbackQuery"), None)

    @property
    def last(self) -> Reply:
        messages = self.messages
        assert messages, f"no message in {self!r}"
        return messages[-1]

    def with_text(self, part: str) -> Reply:
        """The last message whose text contains `part`."""
        for reply in reversed(self.messages):
            if part in reply.text:
                return reply
        raise AssertionError(f"no message with {part!r} in {[r.text for r in self]!r}")


@dataclass
class _Shown:
    """A message as it stands in the chat now (edits applied)."""

    text: str
    markup: InlineKeyboardMarkup | None


class RecordingSession(BaseSession):
    """A Bot API session that sends nothing: each call is recorded and answered with what
    Telegram would answer (message ids count from 1 in each chat)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.clock = clock
        self.calls: list[tuple[str, TelegramMethod[Any]]] = []
        self.replies: list[Reply] = []
        self.shown: dict[tuple[int, int], _Shown] = {}
        self.callback_users: dict[str, int] = {}  # callback query id -> the user who pressed
        self._message_ids: dict[int, itertools.count[int]] = {}

    def next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    async def close(self) -> None:
        return None

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError("the in-process client downloads no files")
        yield b""  # pragma: no cover - makes this an async generator

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        name = method.__api_method__
        self.calls.append((name, method))
        result: Any
        if name == "getMe":
            result = TelegramUser(id=bot.id, is_bot=True, first_name="ATTN", username="attn_bot")
        elif name in _MESSAGE_METHODS:
            result = self._message(bot, name, method)
        elif name == "answerCallbackQuery":
            params: Any = method
            user = self.callback_users.get(params.callback_query_id, 0)
            text = params.text or ""
            self.replies.append(Reply(name, user, None, text, alert=bool(params.show_alert)))
            result = True
        elif name == "getUpdates":
            result = []
        else:  # deleteMessage, setMyCommands, setChatMenuButton, sendChatAction, ...
            result = True
        return result  # type: ignore[no-any-return]

    def _message(self, bot: Bot, name: str, method: Any) -> Message | bool:
        if getattr(method, "inline_message_id", None):
            return True
        chat_id = int(method.chat_id)
        markup = getattr(method, "reply_markup", None)
        inline = markup if isinstance(markup, InlineKeyboardMarkup) else None
        if name.startswith("edit"):
            message_id = int(method.message_id)
            shown = self.shown.setdefault((chat_id, message_id), _Shown("", None))
            if name == "editMessageText":
                shown.text = method.text
            elif name == "editMessageCaption":
                shown.text = method.caption or ""
            shown.markup = inline
        else:
            message_id = self.next_message_id(chat_id)
            text = getattr(method, "text", None) or getattr(method, "caption", None) or ""
            shown = self.shown[(chat_id, message_id)] = _Shown(text, inline)
        document = None
        upload = getattr(method, "document", None)
        if isinstance(upload, BufferedInputFile):
            document = (upload.filename or "", upload.data)
        self.replies.append(
            Reply(
                name,
                chat_id,
                message_id,
                shown.text,
                buttons=_buttons(shown.markup),
                keyboard=(
                    [[b.text for b in row] for row in markup.keyboard]
                    if isinstance(markup, ReplyKeyboardMarkup)
                    else []
                ),
                document=document,
            )
        )
        return Message(
            message_id=message_id,
            date=self.clock(),
            chat=Chat(id=chat_id, type="private"),
            from_user=TelegramUser(id=bot.id, is_bot=True, first_name="ATTN"),
            text=shown.text if name in ("sendMessage", "editMessageText") else None,
            caption=shown.text if name not in ("sendMessage", "editMessageText") else None,
            reply_markup=shown.markup,
            document=(
                Document(file_id=f"doc-{message_id}", file_unique_id=f"u{message_id}")
                if document
                else None
            ),
        )


def _buttons(markup: InlineKeyboardMarkup | None) -> list[list[Button]]:
    if markup is None:
        return []
    return [
        [
            Button(
                text=b.text,
                callback_data=b.callback_data,
                url=b.url,
                web_app=b.web_app.url if b.web_app else None,
            )
            for b in row
        ]
        for row in markup.inline_keyboard
    ]


@dataclass
class ChatUser:
    """A Telegram user in a private chat with the bot."""

    client: ChatClient
    id: int
    name: str
    lang: str

    @property
    def inbox(self) -> list[Reply]:
        """Everything the bot has shown this user so far, notices from the outbox included."""
        return [r for r in self.client.session.replies if r.chat_id == self.id]

    def as_telegram(self) -> TelegramUser:
        return TelegramUser(id=self.id, is_bot=False, first_name=self.name, language_code=self.lang)

    async def send(self, text: str, **kwargs: Any) -> Replies:
        return await self.client.send(text, user=self, **kwargs)

    async def click(self, text_or_data: str, **kwargs: Any) -> Replies:
        return await self.client.click(text_or_data, user=self, **kwargs)

    async def location(self, latitude: float, longitude: float, **kwargs: Any) -> Replies:
        return await self.client.location(latitude, longitude, user=self, **kwargs)

    async def wait_for(self, part: str, *, since: int = 0, timeout: float = 10.0) -> Reply:
        """The first message in `inbox[since:]` whose text has `part`, waiting for it: a notice
        the outbox worker delivers after another user's update, say."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for reply in self.inbox[since:]:
                if part in reply.text:
                    return reply
            if loop.time() > deadline:
                texts = [r.text for r in self.inbox[since:]]
                raise TimeoutError(f"{self.name} never got {part!r}; got {texts!r}")
            await asyncio.sleep(QUIET_SECONDS)


class ChatClient:
    """Users talking to the in-process bot; see the module's docstring."""

    def __init__(self, app: App, session: RecordingSession) -> None:
        self.app = app
        self.session = session
        self._users: dict[int, ChatUser] = {}
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(1)

    def user(self, user_id: int, name: str = "User", lang: str = "en") -> ChatUser:
        if user_id not in self._users:
            self._users[user_id] = ChatUser(self, user_id, name, lang)
        return self._users[user_id]

    def _who(self, user: ChatUser | None) -> ChatUser:
        if user is not None:
            return user
        assert len(self._users) == 1, "several users: say which one (user=...)"
        return next(iter(self._users.values()))

    def _message(self, user: ChatUser, **content: Any) -> Message:
        return Message(
            message_id=self.session.next_message_id(user.id),
            date=self.session.clock(),
            chat=Chat(id=user.id, type="private", first_name=user.name),
            from_user=user.as_telegram(),
            **content,
        )

    async def send(
        self,
        text: str,
        *,
        user: ChatUser | None = None,
        until: Callable[[Replies], bool] | None = None,
        timeout: float = 10.0,
    ) -> Replies:
        """The user writes `text` (a command or a plain message)."""
        who = self._who(user)
        message = self._message(who, text=text)
        return await self._feed(who, Update(update_id=0, message=message), until, timeout)

    async def location(
        self,
        latitude: float,
        longitude: float,
        *,
        accuracy: float | None = None,
        live_period: int | None = None,
        user: ChatUser | None = None,
        until: Callable[[Replies], bool] | None = None,
        timeout: float = 10.0,
    ) -> Replies:
        """The user shares a location (the location keyboard's button, or a live location)."""
        who = self._who(user)
        where = Location(
            latitude=latitude,
            longitude=longitude,
            horizontal_accuracy=accuracy,
            live_period=live_period,
        )
        message = self._message(who, location=where)
        return await self._feed(who, Update(update_id=0, message=message), until, timeout)

    async def click(
        self,
        text_or_data: str,
        *,
        on: Reply | None = None,
        user: ChatUser | None = None,
        until: Callable[[Replies], bool] | None = None,
        timeout: float = 10.0,
    ) -> Replies:
        """The user presses the button labelled (or carrying the payload) `text_or_data`: on
        the message `on` when given, else on the newest message in their chat that has it.
        With `on`, a string no button carries is pressed as a payload (a button an older
        release put there)."""
        who = self._who(user)
        chat, message_id, data = self._find_button(who, text_or_data, on)
        shown = self.session.shown[(chat, message_id)]
        message = Message(
            message_id=message_id,
            date=self.session.clock(),
            chat=Chat(id=chat, type="private"),
            from_user=TelegramUser(id=self.app.bot.id, is_bot=True, first_name="ATTN"),
            text=shown.text,
            reply_markup=shown.markup,
        )
        query_id = str(next(self._query_ids))
        self.session.callback_users[query_id] = who.id
        query = CallbackQuery(
            id=query_id,
            from_user=who.as_telegram(),
            chat_instance=f"chat-{chat}",
            message=message,
            data=data,
        )
        return await self._feed(who, Update(update_id=0, callback_query=query), until, timeout)

    def _find_button(self, user: ChatUser, wanted: str, on: Reply | None) -> tuple[int, int, str]:
        if on is not None:
            assert on.message_id is not None, f"{on!r} is no message"
            shown = self.session.shown[(on.chat_id, on.message_id)]
            found = Reply("", on.chat_id, on.message_id, "", _buttons(shown.markup)).button(wanted)
            data = found.callback_data if found and found.callback_data else wanted
            return on.chat_id, on.message_id, data
        # The messages in the user's chat as they stand now (edits applied), newest first.
        for (chat, message_id), shown in reversed(self.session.shown.items()):
            if chat != user.id:
                continue
            found = Reply("", chat, message_id, "", _buttons(shown.markup)).button(wanted)
            if found is not None and found.callback_data is not None:
                return chat, message_id, found.callback_data
        labels = [r.labels for r in user.inbox if r.buttons]
        raise LookupError(f"no button {wanted!r} in {user.name}'s chat; buttons: {labels}")

    async def _feed(
        self,
        user: ChatUser,
        update: Update,
        until: Callable[[Replies], bool] | None,
        timeout: float,
    ) -> Replies:
        update = update.model_copy(update={"update_id": next(self._update_ids)})
        mark = len(self.session.replies)
        dispatcher, bot = self.app.dispatcher, self.app.bot
        result = await dispatcher.feed_update(bot, update)
        if isinstance(result, TelegramMethod):  # a handler's answer returned as a webhook would
            await bot(result)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await asyncio.wait_for(self.app.answers.join(), max(0.1, deadline - loop.time()))
            got = self._replies_to(user, mark)
            if until is not None and until(got):
                return got
            seen = len(self.session.calls)
            await asyncio.sleep(QUIET_SECONDS)
            if until is None and len(self.session.calls) == seen:
                return self._replies_to(user, mark)
            if loop.time() > deadline:
                if until is None:
                    return self._replies_to(user, mark)
                texts = [r.text for r in got]
                raise TimeoutError(f"{user.name} got {texts!r}, not what `until` waits for")

    def _replies_to(self, user: ChatUser, mark: int) -> Replies:
        return Replies(r for r in self.session.replies[mark:] if r.chat_id == user.id)

    async def login(self, user: ChatUser, username: str, password: str = PASSWORD) -> Reply:
        """The /login conversation; returns the bot's final answer (the edited progress note,
        which the login worker writes once the portal has answered)."""
        await user.send("/login")
        await user.send(username)

        def answered(replies: Replies) -> bool:
            return any("…" not in r.text for r in replies.messages)

        replies = await user.send(password, until=answered, timeout=15)
        return next(r for r in replies.messages if "…" not in r.text)

    async def start_session(self, teacher: ChatUser, args: str = "") -> tuple[str, Reply]:
        """/start_session; returns the six-digit code and the status message that shows it."""
        replies = await teacher.send(f"/start_session {args}".strip())
        for reply in replies.messages:
            match = CODE.search(reply.text)
            if match:
                return match.group(1), reply
        raise AssertionError(f"no code in {replies.text!r}")


@contextlib.asynccontextmanager
async def chat_client(
    *,
    pg_dsn: str,
    redis_url: str,
    aksis: FakeAksis | None = None,
    aksis_client: AksisClient | None = None,
    clock: Callable[[], datetime] | None = None,
    **overrides: Any,
) -> AsyncIterator[ChatClient]:
    """The bot in-process on emptied stores, its startup hooks run (the answer queue, the
    outbox worker, the login worker, the status board, the scheduler) and, on exit, its
    shutdown hooks, as `python -m bot` runs them around polling."""
    await reset_database(pg_dsn)
    await flush_redis(redis_url)
    now = clock or (lambda: datetime.now(UTC))
    session = RecordingSession(clock=now)
    bot = Bot(
        token=TOKEN,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )
    async with contextlib.AsyncExitStack() as stack:
        portal = aksis if aksis is not None else await stack.enter_async_context(FakeAksis())
        settings: Settings = load_settings(
            bot_token=TOKEN,
            database_url=pg_dsn,
            redis_url=redis_url,
            web_port=0,
            # Conversations in tests run faster than a person types; the global rate stays real.
            telegram_per_chat_rate=50.0,
            **{**portal.settings_overrides(), **overrides},
        )
        app = await stack.enter_async_context(
            build_app(settings, aksis=aksis_client, bot=bot, clock=clock)
        )
        workflow = {"dispatcher": app.dispatcher, "bots": [bot]}
        await app.dispatcher.emit_startup(bot=bot, **workflow)
        try:
            yield ChatClient(app, session)
        finally:
            await app.dispatcher.emit_shutdown(bot=bot, **workflow)
