"""The top of the hour at a university, scaled to what two cores simulate in half a minute.

    python -m bench.university [--sessions 10] [--students 30] [--late 0.25] [--spread S]

At a real university ~300 sessions end while ~300 open (80 students each). Here `sessions`
sessions of `students` each do both, against `tests.fakes.telegram_server.FakeTelegram`
enforcing a strict 30 messages/s for the bot (no more than two back to back): the Telegram
budget is the real one, only the number of people is smaller, so every time below scales with
n (its ideal is n/30 s, printed beside it). 10 x 30 is 1/80 of the 300 x 80 hour.

What runs is the project's: `bot.app.build_app` (the real Bot, OutgoingMiddleware, the shared
Redis flood budget, the answer queue, the outbox lanes and the delivery worker). At t = 0,
in this order:

- the ended sessions' results are enqueued as `Finalizer._notify` leaves them: the teachers'
  summaries, and a result for each student whose result is news (the `late` share: late or
  absent; a student present on time was told so by the check-in answer and gets none);
- the students of the new sessions get "attendance is open" (each new session enqueues them as
  `SessionService._announce_open` does: urgent lane, dropped once the student is in);
- the new sessions' students send their codes through the Dispatcher, in shuffled order, spread
  evenly over the first `spread` seconds (by default twice what the opens need at 30/s); each
  answer is a direct answer (first on the budget).

Figures: p50/p99 from a student's code to the answer reaching Telegram; the time to the last
"attendance is open" notice; the time from the sessions' end to their last result; messages per
student in the hour; calls Telegram refused (429s and errors). Ideals: the answers' share of the
budget for the answers; the opens and results go at 30/s in what the answers leave.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from bench.common import (
    STUDENT_BASE,
    ProjectBot,
    Row,
    database_url,
    flush_redis,
    percentile,
    print_table,
    project_settings,
    redis_url,
    throwaway_database,
)

TELEGRAM_RATE = 30.0
# "Strict" as in bench/outbox.py: 30/s sustained, no more than two messages back to back (a
# bucket of 1 answers 429 to any two requests that network jitter brings within 33 ms).
BURST = 2.0


async def measure(
    dsn: str,
    *,
    sessions: int = 10,
    students: int = 30,
    late: float = 0.25,
    spread: float | None = None,
    baseline: bool = False,
) -> dict[str, Any]:
    """With `baseline`, the plan is off as before it: one first-in-first-out outbox, and a
    result for every student (present on time too)."""
    from bot.app import build_app
    from bot.delivery import DeliveryWorker
    from bot.notifier import OutboxNotifier
    from dal.redis.outbox import Outbox, OutboxLanes
    from services.notify import RESULT, URGENT, Moment, Notice, Stale
    from tests.fakes.telegram_server import FakeTelegram

    redis = redis_url()
    await flush_redis(redis)
    per_side = sessions * students
    # Codes come in over twice the time the opens need at 30/s (at full size 24,000 check-ins
    # in the first ~25 minutes).
    spread = 2 * per_side / TELEGRAM_RATE if spread is None else spread
    async with FakeTelegram(strict_chats=False) as fake:
        fake.rate_limit(per_second=TELEGRAM_RATE, global_burst=BURST)
        settings = project_settings(
            dsn, redis, bot_token=fake.token, telegram_api_url=fake.base_url
        )
        async with build_app(settings) as app:
            project = ProjectBot(app)
            try:
                # Students 0..per_side-1 attend the new sessions; the next per_side those ended.
                await project.link_students(2 * per_side)
                opened = [await project.open_session() for _ in range(sessions)]
                tz = settings.tz.key
                opens = [
                    Notice(
                        STUDENT_BASE + s * students + k,
                        project.language(s * students + k),
                        "remind.open",
                        {"lesson": "Bench Dersi 101"},
                        drop_if=(
                            Stale.checked_in(aid, project.number(s * students + k)),
                            Stale.session_over(aid),
                        ),
                        lane=URGENT,
                    )
                    for s, (_code, aid) in enumerate(opened)
                    for k in range(students)
                ]
                ended_at = Moment(project_now(), tz)
                news_every = max(1, round(1 / late)) if late > 0 else 0
                results = [
                    Notice(
                        STUDENT_BASE + per_side + n,
                        project.language(per_side + n),
                        "final.absent",
                        {"lesson": "Bench Dersi 100", "date": ended_at},
                        lane=RESULT,
                        digest="result",  # as Finalizer._notify queues a student's result
                    )
                    for n in range(per_side)
                    if baseline or (news_every and n % news_every == 0)
                ]
                summaries = [
                    Notice(
                        9_000_000 + s,
                        "en",
                        "final.teacher",
                        {
                            "lesson": "Bench Dersi 100",
                            "date": ended_at,
                            "present": students - len(results) // sessions,
                            "late": 0,
                            "absent": len(results) // sessions,
                            "pending": 0,
                            "rejected": 0,
                        },
                        lane=RESULT,
                    )
                    for s in range(sessions)
                ]
                calls_before = len(fake.calls)
                notifier, worker = app.notifier, app.delivery
                if baseline:
                    single = OutboxLanes.single(Outbox(app.redis.redis))
                    notifier, worker = OutboxNotifier(single), DeliveryWorker(app.bot, single)
                await worker.start()
                began = time.monotonic()
                # The ended sessions are finalized a moment before the next ones open.
                await notifier.enqueue([*summaries, *results])
                await notifier.enqueue(opens)
                sent_at: dict[int, float] = {}

                # Students send their codes in no particular order (not the order of the notices).
                turn = list(range(per_side))
                random.Random(25).shuffle(turn)

                async def student(s: int, k: int, code: str) -> None:
                    n = s * students + k
                    await asyncio.sleep(spread * turn[n] / per_side)
                    (update,) = project.updates(code, range(n, n + 1))
                    sent_at[STUDENT_BASE + n] = time.monotonic()
                    await project.feed(update)

                await asyncio.gather(
                    *(
                        student(s, k, code)
                        for s, (code, _aid) in enumerate(opened)
                        for k in range(students)
                    )
                )
                await project.answered()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if await app.outbox.backlog() == 0:
                        break
                    await asyncio.sleep(0.2)
                drained = time.monotonic()
                dropped_stale = worker.dropped_stale

                recorded = sum([await project.recorded(aid) for _c, aid in opened])
            finally:
                await project.stop()
                await worker.stop()
                await app.bot.session.close()
    calls = fake.calls[calls_before:]
    sends = [c for c in calls if c.method.lower() == "sendmessage"]
    accepted = [c for c in sends if c.ok]
    new_chats = set(range(STUDENT_BASE, STUDENT_BASE + per_side))
    answers: dict[int, float] = {}
    open_times: list[float] = []
    result_times: list[float] = []
    result_chats = {n.telegram_id for n in [*summaries, *results]}
    for call in accepted:
        chat = call.chat_id
        text = str(call.params.get("text", ""))
        if chat in new_chats and chat not in answers and "📣" not in text:
            answers[int(chat)] = call.at
        elif chat in new_chats:
            open_times.append(call.at)
        elif chat in result_chats:
            result_times.append(call.at)
    latencies = [answers[c] - sent_at[c] for c in answers if c in sent_at]
    wasted = [c for c in calls if not c.ok]
    sent_students = [
        c for c in accepted if isinstance(c.chat_id, int) and c.chat_id >= STUDENT_BASE
    ]
    return {
        "sessions": sessions,
        "students_per_session": students,
        "students": 2 * per_side,
        "scale": f"1/{300 * 80 // max(1, per_side)} of 300 x 80",
        "spread_seconds": spread,
        "recorded": recorded,
        "answers": len(answers),
        "answer_p50_s": percentile(latencies, 50) if latencies else float("nan"),
        "answer_p99_s": percentile(latencies, 99) if latencies else float("nan"),
        "opens_sent": len(open_times),
        "opens_dropped": len(opens) - len(open_times),
        "last_open_s": (max(open_times) - began) if open_times else 0.0,
        "results_sent": len(result_times),
        "results_enqueued": len(summaries) + len(results),
        "results_not_news": per_side - len(results),
        "baseline": baseline,
        "last_result_s": (max(result_times) - began) if result_times else 0.0,
        "messages": len(accepted),
        "messages_per_student": len(sent_students) / (2 * per_side),
        "wasted_calls": len(wasted),
        "answered_429": sum(1 for c in wasted if c.status == 429),
        "drained_s": drained - began,
        "worker_dropped_stale": dropped_stale,
    }


def project_now() -> Any:
    from bench.common import now_utc

    return now_utc()


def rows(result: dict[str, Any]) -> list[Row]:
    section = (
        ("BASELINE (no lanes, every result) " if result["baseline"] else "")
        + f"university hour ({result['sessions']}x{result['students_per_session']} ending + "
        f"{result['sessions']}x{result['students_per_session']} opening, 30/s strict, "
        f"{result['scale']})"
    )
    answers = result["answers"]
    spread = result["spread_seconds"]
    opens = result["opens_sent"]
    # Answers come as fast as students send (spread); each slot taken by one leaves the rest.
    ideal_answer = 1 / TELEGRAM_RATE
    ideal_opens = (opens + answers) / TELEGRAM_RATE
    ideal_results = result["messages"] / TELEGRAM_RATE
    return [
        Row(
            section,
            "code -> answer p50",
            result["answer_p50_s"],
            "s",
            f"ideal {ideal_answer:.3f} s (one slot)",
            result["answer_p50_s"] <= 1.0,
            result,
        ),
        Row(section, "code -> answer p99", result["answer_p99_s"], "s", "<= 2", None),
        Row(
            section,
            f"last 'attendance is open' ({opens} sent, {result['opens_dropped']} dropped: in)",
            result["last_open_s"],
            "s",
            f"ideal (opens + answers)/30 = {ideal_opens:.1f} s",
        ),
        Row(
            section,
            f"end -> last result ({result['results_sent']} sent, "
            f"{result['results_not_news']} present on time not repeated)",
            result["last_result_s"],
            "s",
            f"ideal all messages/30 = {ideal_results:.1f} s",
        ),
        Row(
            section,
            "messages per student in the hour",
            result["messages_per_student"],
            "ratio",
            f"answers arrive over {spread:.0f} s",
        ),
        Row(
            section,
            "Telegram calls wasted (429s, refusals)",
            float(result["wasted_calls"]),
            "calls",
            "0",
            result["wasted_calls"] == 0,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--late", type=float, default=0.25)
    parser.add_argument("--spread", type=float, default=None)
    parser.add_argument(
        "--baseline", action="store_true", help="also run without the plan, for comparison"
    )
    args = parser.parse_args()

    async def standalone() -> list[Row]:
        out: list[Row] = []
        async with throwaway_database(database_url()) as dsn:
            for baseline in (False, True) if args.baseline else (False,):
                out += rows(
                    await measure(
                        dsn,
                        sessions=args.sessions,
                        students=args.students,
                        late=args.late,
                        spread=args.spread,
                        baseline=baseline,
                    )
                )
        return out

    print_table(asyncio.run(standalone()))


if __name__ == "__main__":
    main()
