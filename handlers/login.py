"""/login and /logout: the Aksis sign-in conversation.

The user name and the password messages are deleted as soon as they are read. The password only
ever lives in the local variables of one call; the user name waits between the two steps in the
FSM data, encrypted (bot.secrets.Sealer), and is dropped when the password arrives.

With the sign-in page offered (`PUBLIC_URL` set) and `CHAT_LOGIN` off, /login answers with the
page's button instead of asking; a user name or password typed anyway is deleted all the same
and the user pointed to the button. A sign-on beyond the portal's pace waits in the login queue
(services/login_queue.py); its progress message is edited in place as the line moves.

Every message that may carry a credential is deleted, on every path: `/login USERNAME` even when
the account is throttled; a password that arrives after its step expired; and any plain text
(a six-digit password included, which must not become a check-in) from an account the bot last
asked for a credential, for a short "login expired" window after the step
(`AccountService.prompted_for_credential`).
"""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.methods import SendMessage
from aiogram.types import Message

from handlers.deps import Sealer, Settings
from handlers.filters import has_text, no_text, on_command
from handlers.replies import Reply
from services.accounts import AccountService, valid_username
from services.login_queue import LoginQueue, Queued
from services.pseudonyms import pseudonym
from ui.i18n import COMMANDS, current_locale, t
from ui.login import queued_text, result_text, sign_in_keyboard
from ui.states import LoginForm

log = logging.getLogger(__name__)


async def _forget(bot: Bot, message: Message) -> None:
    """Delete a message that carried a credential; if Telegram refuses, ask the user to."""
    try:
        await bot.delete_message(chat_id=message.chat.id, message_id=message.message_id)
    except TelegramAPIError:
        log.warning("could not delete a credential message of chat %s", pseudonym(message.chat.id))
        # Awaited: the handler's own reply follows and must come after this one.
        await message.answer(t("login.delete_failed"))


def may_carry_credential(message: Message) -> bool:
    """Whether a message might hold a user name or password when the conversation state
    cannot be read (a store is down): `/login ARGS` in any chat, whatever the case of the
    command, and in a private chat any text or caption that is not a command."""
    body = message.text if message.text is not None else message.caption
    if not body or not body.strip():
        return False
    words = body.split()
    if words[0].startswith("/"):
        name = words[0][1:].split("@", 1)[0].casefold()
        return name == "login" and len(words) > 1
    return message.chat.type == "private"


async def forget_quietly(bot: Bot, message: Message) -> None:
    """Delete a message that may carry a credential, before an error answer; a message the
    handler had already deleted (or that cannot be deleted) is only logged."""
    try:
        await bot.delete_message(chat_id=message.chat.id, message_id=message.message_id)
    except TelegramAPIError:
        log.info(
            "a possible credential message of chat %s was not deleted", pseudonym(message.chat.id)
        )


def _minutes(seconds: int) -> int:
    return max(1, (seconds + 59) // 60)


async def _ask(
    message: Message, state: FSMContext, accounts: AccountService, step: State, text: str
) -> SendMessage:
    """Ask for a credential: the conversation state, the note that one is expected, the
    question."""
    assert message.from_user is not None
    await state.set_state(step)
    await accounts.prompted_for_credential(telegram_id=message.from_user.id, step=step.state or "")
    return message.answer(text)


def _use_the_page(message: Message, settings: Settings) -> SendMessage | None:
    """With chat login off, the answer pointing to the sign-in page's button."""
    if settings.chat_login_enabled or settings.public_url is None:
        return None
    return message.answer(t("login.use_button"), reply_markup=sign_in_keyboard(settings.public_url))


async def login_start(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    bot: Bot,
    accounts: AccountService,
    sealer: Sealer,
    settings: Settings,
) -> Reply:
    await state.clear()
    assert message.from_user is not None
    username = (command.args or "").strip()
    if username:  # the command itself carries a user name: gone before anything else
        await _forget(bot, message)
    page = _use_the_page(message, settings)
    if page is not None:
        # A password typed next anyway is deleted (and answered with the button again).
        await accounts.prompted_for_credential(telegram_id=message.from_user.id, step="page")
        return page
    wait = await accounts.login_retry_after(telegram_id=message.from_user.id)
    if wait:
        return message.answer(t("login.throttled", minutes=_minutes(wait)))
    if not username:
        return await _ask(message, state, accounts, LoginForm.username, t("login.ask_username"))
    if not valid_username(username):
        return await _ask(message, state, accounts, LoginForm.username, t("login.bad_username"))
    await state.set_data({"u": sealer.seal(username)})
    return await _ask(message, state, accounts, LoginForm.password, t("login.ask_password"))


async def login_username(
    message: Message,
    state: FSMContext,
    bot: Bot,
    accounts: AccountService,
    sealer: Sealer,
) -> Reply:
    username = (message.text or "").strip()
    await _forget(bot, message)
    if not valid_username(username):
        return await _ask(message, state, accounts, LoginForm.username, t("login.bad_username"))
    await state.set_data({"u": sealer.seal(username)})
    return await _ask(message, state, accounts, LoginForm.password, t("login.ask_password"))


async def login_password(
    message: Message,
    state: FSMContext,
    bot: Bot,
    accounts: AccountService,
    login_queue: LoginQueue,
    sealer: Sealer,
) -> Reply:
    lang = current_locale()
    password = message.text or ""
    await _forget(bot, message)
    sealed = (await state.get_data()).get("u")
    await state.clear()
    username = sealer.unseal(sealed) if isinstance(sealed, str) else None
    assert message.from_user is not None
    if username is None:  # the step expired: the "login expired" window goes on
        await accounts.login_step_expired(telegram_id=message.from_user.id)
        return message.answer(t("login.expired"))
    await accounts.credential_answered(telegram_id=message.from_user.id)
    # Awaited, not returned: the result replaces this message, which needs its id.
    progress = await message.answer(t("login.checking"))
    outcome = await login_queue.submit(
        telegram_id=message.from_user.id,
        language=lang,
        username=username,
        password=password,
        channel="chat",
        chat_id=message.chat.id,
        message_id=progress.message_id,
    )
    if isinstance(outcome, Queued):  # bot/login_worker.py edits it as the line moves
        return progress.edit_text(queued_text(outcome))
    return progress.edit_text(result_text(outcome))


async def late_credential(message: Message, bot: Bot, settings: Settings) -> Reply:
    """Plain text, outside any conversation, from an account the bot last asked for a
    credential: it may be the password typed after the login step expired, so it is deleted
    (and never taken as a check-in code). Registered on the root router right after the
    check-in handler (handlers.build_router), with the `expects_credential` filter."""
    await _forget(bot, message)
    return _use_the_page(message, settings) or message.answer(t("login.expired"))


async def expects_credential(
    message: Message,
    accounts: AccountService,
    raw_state: str | None = None,
    login_prompt: object = None,
) -> bool:
    """Plain text in a private chat, outside any conversation, from an account the bot last
    asked for a credential. For a code the FSM middleware has read that along with the state
    (bot/fsm.py, `login_prompt`: True/False); any other text asks Redis here."""
    if message.chat.type != "private" or raw_state is not None or message.text is None:
        return False
    if isinstance(login_prompt, bool):
        return login_prompt
    if message.from_user is None or message.text.startswith("/"):
        return False
    return await accounts.awaits_credential(telegram_id=message.from_user.id)


async def login_not_text(message: Message, bot: Bot) -> Reply:
    """Anything but text at a credential step: a caption may be the password itself, and a
    photo a screenshot of it, so it is deleted before the answer."""
    await _forget(bot, message)
    return message.answer(t("login.text_only"))


async def logout(message: Message, state: FSMContext, accounts: AccountService) -> Reply:
    await state.clear()
    assert message.from_user is not None
    unlinked = await accounts.logout(telegram_id=message.from_user.id)
    return message.answer(t("logout.ok" if unlinked else "auth.not_linked"))


def router() -> Router:
    """/login, its two steps and /logout; a new router each call."""
    routes = Router(name="login")
    routes.message.register(login_start, on_command("login"))
    routes.message.register(
        login_username, StateFilter(LoginForm.username), has_text, ~on_command(*COMMANDS)
    )
    routes.message.register(
        login_password, StateFilter(LoginForm.password), has_text, ~on_command(*COMMANDS)
    )
    routes.message.register(
        login_not_text, StateFilter(LoginForm.username, LoginForm.password), no_text
    )
    routes.message.register(logout, on_command("logout"))
    return routes
