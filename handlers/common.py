"""/start (and deep links), /help, /me, /cancel, /reminders, and the catch-alls."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from bot.i18n import t
from dal.models import Role, UserSessionRedis
from handlers.deps import Metrics, StatusBoard
from handlers.filters import has_text, too_long
from handlers.guards import require_user
from handlers.student import reply_check_in
from services.accounts import AccountService
from services.attendance import AttendanceService

router = Router(name="common")


def _help_key(user: UserSessionRedis | None) -> str:
    if user is None:
        return "help.unlinked"
    return "help.teacher" if user.role is Role.TEACHER else "help.student"


@router.message(CommandStart(deep_link=True, magic=F.args.regexp(r"^ci_\d{6}$")))
async def start_check_in(
    message: Message,
    command: CommandObject,
    user: UserSessionRedis | None,
    lang: str,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
    metrics: Metrics,
) -> None:
    """`https://t.me/<bot>?start=ci_<code>` checks in like sending the code."""
    await state.clear()
    require_user(user)
    code = (command.args or "")[3:]
    await reply_check_in(
        message, code, lang=lang, attendance=attendance, board=board, metrics=metrics
    )


@router.message(CommandStart())
async def start(message: Message, user: UserSessionRedis | None, lang: str) -> None:
    if user is None:
        await message.answer(t("start.unlinked", lang))
    else:
        await message.answer(
            t("start.linked", lang, name=user.full_name, role=t(f"role.{user.role}", lang))
        )


@router.message(Command("help"))
async def help_(message: Message, user: UserSessionRedis | None, lang: str) -> None:
    await message.answer(t(_help_key(user), lang))


@router.message(Command("cancel"))
async def cancel(message: Message, state: FSMContext, lang: str) -> None:
    if await state.get_state() is None:
        await message.answer(t("cancel.nothing", lang))
        return
    await state.clear()
    await message.answer(t("cancel.done", lang))


@router.message(Command("me"))
async def me(message: Message, user: UserSessionRedis | None, lang: str) -> None:
    linked = require_user(user)
    await message.answer(
        t(
            "me.info",
            lang,
            name=linked.full_name,
            role=t(f"role.{linked.role}", lang),
            number=linked.school_number,
            reminders=t("on" if linked.reminders_enabled else "off", lang),
        )
    )


@router.message(Command("reminders"))
async def reminders(
    message: Message, user: UserSessionRedis | None, lang: str, accounts: AccountService
) -> None:
    linked = require_user(user)
    updated = await accounts.set_reminders(user=linked, enabled=not linked.reminders_enabled)
    await message.answer(
        t("reminders.now", lang, state=t("on" if updated.reminders_enabled else "off", lang))
    )


@router.message(too_long)
async def text_too_long(message: Message, lang: str) -> None:
    await message.answer(t("text.too_long", lang))


@router.message(has_text)
async def unknown_text(message: Message, lang: str) -> None:
    await message.answer(t("text.unknown", lang))


@router.message()
async def non_text(message: Message, lang: str) -> None:
    await message.answer(t("text.non_text", lang))
