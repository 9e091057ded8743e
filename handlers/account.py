"""The linked account: /me, /reminders, /receipts and the check-in deep link (linked users)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from handlers.access import MemberGate
from handlers.deps import Metrics, StatusBoard
from handlers.filters import on_command, on_start
from handlers.replies import Reply
from handlers.student import reply_check_in
from services.accounts import AccountService
from services.attendance import AttendanceService
from services.members import Member
from ui.i18n import t


async def start_check_in(
    message: Message,
    command: CommandObject,
    attendance: AttendanceService,
    board: StatusBoard,
    state: FSMContext,
    metrics: Metrics,
) -> Reply:
    """`https://t.me/<bot>?start=ci_<code>` checks in like sending the code."""
    await state.clear()
    code = (command.args or "")[3:]
    return await reply_check_in(message, code, attendance=attendance, board=board, metrics=metrics)


async def me(message: Message, user: Member) -> Reply:
    return message.answer(
        t(
            "me.info",
            name=user.full_name,
            role=t(f"role.{user.role}"),
            number=user.school_number,
            reminders=t("on" if user.reminders_enabled else "off"),
        )
    )


async def reminders(message: Message, user: Member, accounts: AccountService) -> Reply:
    updated = await accounts.set_reminders(member=user, enabled=not user.reminders_enabled)
    return message.answer(t("reminders.now", state=t("on" if updated.reminders_enabled else "off")))


async def receipts(message: Message, user: Member, accounts: AccountService) -> Reply:
    """Whether a result that only repeats the check-in answer (present, on time) is sent too."""
    enabled = not await accounts.receipts_enabled(member=user)
    await accounts.set_receipts(member=user, enabled=enabled)
    return message.answer(t("receipts.now", state=t("on" if enabled else "off")))


def router() -> Router:
    """A linked user's own account: /me, /reminders, /receipts; a new router each call."""
    routes = Router(name="account")
    routes.message.middleware(MemberGate())
    routes.message.register(
        start_check_in, on_start(deep_link=True, magic=F.args.regexp(r"^ci_\d{6}$"))
    )
    routes.message.register(me, on_command("me"))
    routes.message.register(reminders, on_command("reminders"))
    routes.message.register(receipts, on_command("receipts"))
    return routes
