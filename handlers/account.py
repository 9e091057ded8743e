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

router = Router(name="account")
router.message.middleware(MemberGate())


@router.message(on_start(deep_link=True, magic=F.args.regexp(r"^ci_\d{6}$")))
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


@router.message(on_command("me"))
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


@router.message(on_command("reminders"))
async def reminders(message: Message, user: Member, accounts: AccountService) -> Reply:
    updated = await accounts.set_reminders(member=user, enabled=not user.reminders_enabled)
    return message.answer(t("reminders.now", state=t("on" if updated.reminders_enabled else "off")))


@router.message(on_command("receipts"))
async def receipts(message: Message, user: Member, accounts: AccountService) -> Reply:
    """Whether a result that only repeats the check-in answer (present, on time) is sent too."""
    enabled = not await accounts.receipts_enabled(member=user)
    await accounts.set_receipts(member=user, enabled=enabled)
    return message.answer(t("receipts.now", state=t("on" if enabled else "off")))
