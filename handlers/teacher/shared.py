"""Small pieces the teacher modules share."""

from __future__ import annotations

from uuid import UUID

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import CallbackQuery, Message

from services.errors import SessionGone


def message_of(query: CallbackQuery) -> Message | None:
    """The message under the pressed button (None when Telegram no longer gives it)."""
    return query.message if isinstance(query.message, Message) else None


async def remember_aid(state: FSMContext, step: State, aid: UUID, **extra: str) -> None:
    """Open a conversation step about one session (the id kept as hex: FSM data is JSON)."""
    await state.set_state(step)
    await state.set_data({"aid": aid.hex, **extra})


async def recalled_aid(state: FSMContext) -> tuple[UUID, dict[str, object]]:
    """The session a conversation step is about, with the step's data. Data that no longer
    names a session ends the step with SessionGone (answered by the error router)."""
    data = await state.get_data()
    try:
        return UUID(hex=str(data.get("aid", ""))), data
    except ValueError:
        await state.clear()
        raise SessionGone from None
