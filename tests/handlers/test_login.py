"""The /login conversation's outcomes a user meets (handlers/login.py): wrong passwords
throttled with the time to wait, and a second Telegram account taking over the link."""

from __future__ import annotations

from tests.client import ChatClient
from tests.fakes.aksis_server import FakeAksis


async def test_failed_logins_are_throttled_with_the_wait_time(
    client: ChatClient, portal: FakeAksis
) -> None:
    user = client.user(300, "Mallory")
    for _ in range(5):
        answer = await client.login(user, "student1", password="wrong")
        assert "did not accept" in answer.text
    assert "wait" in (await user.send("/login")).text
    assert len(portal.requests_to("/Account/LogOn", "POST")) == 5


async def test_second_account_takes_over_the_link(client: ChatClient) -> None:
    first = client.user(201, "Ayşe")
    second = client.user(211, "Ayşe (new phone)")
    await client.login(first, "student1")
    seen = len(first.inbox)
    await client.login(second, "student1")
    await first.wait_for("linked to another Telegram account", since=seen)
    assert "/login" in (await first.send("/me")).text
    assert "2024001" in (await second.send("/me")).text
