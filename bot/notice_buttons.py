"""The buttons services attach to notices (`services.notify.Button`): their callback data,
or the Mini App page a `web_app` button opens. The Notifier itself is bot/notifier.py.
"""

from __future__ import annotations

from services.notify import Button
from ui.callbacks import ExcuseDecision, LessonPick, Verdict

_EXCUSE_VERDICTS = {"excuse_approve": Verdict.ACCEPT, "excuse_reject": Verdict.REJECT}


def callback_data(button: Button) -> str:
    """The callback data for a service's button action."""
    if button.action == "start_lesson":
        code, start = button.args
        return LessonPick(code=str(code)[:24], start=int(start)).pack()
    if button.action in _EXCUSE_VERDICTS:
        (request_id,) = button.args
        return ExcuseDecision(
            action=_EXCUSE_VERDICTS[button.action], request_id=int(request_id)
        ).pack()
    raise ValueError(f"unknown button action {button.action!r}")


# The Mini App pages a notice's `web_app` button may open (bot/webapp/).
WEB_APP_PAGES = {"checkin": "/app/checkin", "figures": "/app/figures"}


def web_app_url(public_url: str, button: Button) -> str:
    """The page a `web_app` button opens: `Button(label, "web_app", ("checkin",))`."""
    return public_url.rstrip("/") + WEB_APP_PAGES[str(button.args[0])]
