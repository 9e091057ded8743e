"""Who may do what (handlers/access.py): a student's teacher commands and forged teacher buttons
are refused with the reason, and the session stays as it was."""

from __future__ import annotations

from uuid import UUID

from tests.client import ChatClient, Reply


def _session_id(status: Reply) -> str:
    """The session's id as the status message's End button carries it (what a forger copies)."""
    (data,) = [
        b.callback_data
        for row in status.buttons
        for b in row
        if b.callback_data and b.callback_data.startswith("sa:end:")
    ]
    return data.removeprefix("sa:end:")


async def test_a_student_cannot_act_as_a_teacher(client: ChatClient) -> None:
    teacher = client.user(100, "Elif")
    student = client.user(201, "Ayşe")
    intruder = client.user(202, "İsmail")
    await client.login(teacher, "teacher1")
    await client.login(student, "student1")
    await client.login(intruder, "student2")
    code, status = await client.start_session(teacher)
    assert "checked in" in (await student.send(code)).text
    aid = _session_id(status)

    assert "Only teachers" in (await intruder.send("/start_session")).text
    assert "Only teachers" in (await intruder.send("/end_session")).text

    # Forged buttons: reject the student, end the session, open another teacher's history.
    for data in (f"rv:r:{aid}:2024001", f"sa:end:{aid}", f"ho:{aid}:0", "rv:a:zz:1"):
        pressed = await intruder.click(data, on=status)
        assert pressed.answer is not None and pressed.answer.alert, data
        assert pressed.messages == [], data  # nothing sent or edited for the intruder

    roster = await client.app.attendance.status(attendance_id=UUID(hex=aid))
    assert roster is not None and roster.attendance.end_time is None
    assert [r.is_attended for r in roster.records] == [True]
