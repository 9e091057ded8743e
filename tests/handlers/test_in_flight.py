"""Shutdown waits for the updates in flight (bot/middlewares.py `InFlightMiddleware`), through a
real Dispatcher: the middleware counts them itself instead of reading the Dispatcher's private
polling task set.
"""

from __future__ import annotations

import asyncio

from aiogram import Bot, Dispatcher
from aiogram.types import Chat, Message, Update, User

from bot.middlewares import InFlightMiddleware


def _update(update_id: int) -> Update:
    return Update(
        update_id=update_id,
        message=Message(
            message_id=update_id,
            date=0,
            chat=Chat(id=1, type="private"),
            from_user=User(id=1, is_bot=False, first_name="A"),
            text="hello",
        ),
    )


async def test_shutdown_waits_for_the_updates_in_flight_and_no_longer() -> None:
    in_flight = InFlightMiddleware()
    release = asyncio.Event()
    started = asyncio.Event()
    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware(in_flight)

    @dispatcher.message()
    async def slow(message: Message) -> None:
        started.set()
        await release.wait()

    bot = Bot("42:TEST")  # no request is made: the handler sends nothing
    assert await in_flight.wait(0.01)  # nothing in flight
    task = asyncio.create_task(dispatcher.feed_update(bot, _update(1)))
    await started.wait()
    assert len(in_flight) == 1

    assert not await in_flight.wait(0.05)  # bounded: the handler is still running
    assert not task.done()

    waiting = asyncio.create_task(in_flight.wait(5))
    await asyncio.sleep(0.01)
    release.set()
    assert await waiting
    assert task.done()
    assert len(in_flight) == 0


async def test_an_update_task_created_just_before_shutdown_is_waited_for() -> None:
    in_flight = InFlightMiddleware()
    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware(in_flight)
    handled: list[int] = []

    @dispatcher.message()
    async def quick(message: Message) -> None:
        await asyncio.sleep(0.05)
        handled.append(message.message_id)

    bot = Bot("42:TEST")  # no request is made: the handler sends nothing
    task = asyncio.create_task(dispatcher.feed_update(bot, _update(2)))  # not started yet
    assert await in_flight.wait(5)
    assert handled == [2]
    assert task.done()
