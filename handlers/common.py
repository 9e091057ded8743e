"""/start, /help, /cancel, and the catch-alls (an outdated button among them)."""

from __future__ import annotations

from aiogram import Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.deps import Settings
from handlers.filters import has_text, on_command, on_start, too_long
from handlers.replies import Reply
from services.members import Member
from ui.i18n import t
from ui.login import sign_in_keyboard


def _help_key(user: Member | None) -> str:
    if user is None:
        return "help.unlinked"
    return "help.teacher" if user.is_teacher else "help.student"


async def start(message: Message, user: Member | None, settings: Settings) -> Reply:
    if user is None:
        if settings.public_url is not None and message.chat.type == "private":
            return message.answer(
                t("start.unlinked"), reply_markup=sign_in_keyboard(settings.public_url)
            )
        return message.answer(t("start.unlinked"))
    return message.answer(t("start.linked", name=user.full_name, role=t(f"role.{user.role}")))


async def help_(message: Message, user: Member | None) -> Reply:
    return message.answer(t(_help_key(user)))


async def cancel(message: Message, state: FSMContext) -> Reply:
    if await state.get_state() is None:
        return message.answer(t("cancel.nothing"))
    await state.clear()
    return message.answer(t("cancel.done"))


async def text_too_long(message: Message) -> Reply:
    return message.answer(t("text.too_long"))


async def unknown_text(message: Message) -> Reply:
    return message.answer(t("text.unknown"))


async def non_text(message: Message) -> Reply:
    return message.answer(t("text.non_text"))


async def outdated_button(query: CallbackQuery, callback_answer: CallbackAnswer) -> None:
    """A button no handler takes: its data no longer parses (an older release's button, or a
    forged one). The presser is told, instead of a spinner that never stops."""
    callback_answer.text = t("button.outdated")
    callback_answer.show_alert = True


def router() -> Router:
    """/start, /help, /cancel, then the catch-alls; a new router each call."""
    routes = Router(name="common")
    routes.message.register(start, on_start())
    routes.message.register(help_, on_command("help"))
    routes.message.register(cancel, on_command("cancel"))
    routes.message.register(text_too_long, too_long)
    routes.message.register(unknown_text, has_text)
    routes.message.register(non_text)
    routes.callback_query.register(outdated_button)
    return routes
