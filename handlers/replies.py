"""Handlers return their reply; they do not await it.

A handler whose last action is one reply or edit returns the method (`return message.answer(
...)`) instead of awaiting it. aiogram's Dispatcher executes a `TelegramMethod` a handler returns
once the update has left the middleware chain (`Dispatcher.silent_call_request`, called by
`_process_update` in polling and by the webhook handler's background task), that is after the
per-user lock (bot/locks.py, taken by the FSM middleware inside that chain) has been released.
So a reply that waits for the flood budget (bot/outgoing.py) no longer keeps the user's next
update waiting behind the lock, and after a crash no lock is left held by a send.

Why this route and not the answer queue (bot/answers.py): it is the framework's own, public
contract for returned methods, it carries any method (keyboards, edits, documents) with the
session middlewares (pacing, retries) applied, and it keeps the update's task alive until the
reply is sent, so graceful shutdown still waits for it. The answer queue stays for the check-in
hot path, where handing a plain text off keeps 10,000 simultaneous answers small in memory.

In webhook mode the handler is registered with `handle_in_background=True` (bot/web.py): a
returned method is then sent through the Bot API like in polling, never written into the
webhook's HTTP response, so it is paced by the shared flood budget and sent exactly once.

A Bot API error on a returned method is logged by aiogram ("Failed to make answer") instead of
reaching the error router; an undeliverable chat is still recorded by the outgoing middleware.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from aiogram.methods import TelegramMethod

Reply: TypeAlias = TelegramMethod[Any] | None
