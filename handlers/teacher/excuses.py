"""Teachers: Approve / Reject under an excuse request's notice (services/excuses.py).

Approve excuses the record at once through the correction path; Reject asks for the reason,
which the student reads. A request already decided answers so, whoever presses.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.filters import has_text, on_command
from handlers.replies import Reply
from handlers.teacher.shared import message_of
from services.errors import ExcuseRefused, InvalidInput
from services.excuses import ExcuseService
from services.members import Member
from ui.callbacks import ExcuseDecision, Verdict
from ui.i18n import COMMANDS, date_time_text, t


class ExcuseRejectForm(StatesGroup):
    reason = State()


def decision_keyboard(request_id: int) -> InlineKeyboardMarkup:
    """Approve / Reject of one request, as under its notice (bot/notice_buttons.py)."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("button.excuse_approve"),
                    callback_data=ExcuseDecision(
                        action=Verdict.ACCEPT, request_id=request_id
                    ).pack(),
                )
            ],
            [
                InlineKeyboardButton(
                    text=t("button.excuse_reject"),
                    callback_data=ExcuseDecision(
                        action=Verdict.REJECT, request_id=request_id
                    ).pack(),
                )
            ],
        ]
    )


async def decide(
    query: CallbackQuery,
    callback_data: ExcuseDecision,
    callback_answer: CallbackAnswer,
    user: Member,
    excuses: ExcuseService,
    state: FSMContext,
) -> Reply:
    message = message_of(query)
    if callback_data.action is Verdict.ACCEPT:
        decision = await excuses.approve(teacher=user, request_id=callback_data.request_id)
        request = decision.request
        callback_answer.text = t(
            "excreq.approved_teacher" if decision.applied else "excreq.approved_advance_teacher",
            number=request.student_number,
            date=date_time_text(request.lesson_start, excuses.tz),
        )
        if message is None:
            return None
        return message.edit_reply_markup(reply_markup=None)
    request = await excuses.pending(teacher=user, request_id=callback_data.request_id)
    await state.set_state(ExcuseRejectForm.reason)
    await state.set_data({"rid": request.request_id})
    if message is None:
        return None
    return message.answer(
        t("excreq.ask_reject_reason", id=request.request_id, name=request.student_name)
    )


async def reject_reason(
    message: Message, user: Member, excuses: ExcuseService, state: FSMContext
) -> Reply:
    rid = (await state.get_data()).get("rid")
    if not isinstance(rid, int):
        await state.clear()
        raise ExcuseRefused("excreq.step_over")
    try:
        request = await excuses.reject(teacher=user, request_id=rid, reason=message.text or "")
    except InvalidInput:
        raise  # an empty or too long reason keeps the step open
    except Exception:
        await state.clear()
        raise
    await state.clear()
    return message.answer(
        t("excreq.rejected_teacher", id=request.request_id, name=request.student_name)
    )


def router() -> Router:
    """The teacher's decision on a student's excuse request; a new router each call."""
    routes = Router(name="teacher.excuses")
    routes.callback_query.register(decide, ExcuseDecision.filter())
    routes.message.register(
        reject_reason, StateFilter(ExcuseRejectForm.reason), has_text, ~on_command(*COMMANDS)
    )
    return routes
