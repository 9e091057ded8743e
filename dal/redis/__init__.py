"""Redis access, one module per aggregate over the process's one `redis.asyncio.Redis`.

keys.py          every key name (and the purge's reading of them back)
scripts.py       loads lua/*.lua with the shared prelude; EVALSHA with NOSCRIPT fallback
sessions.py      live attendance sessions, their settings, codes and records; the due index
checkins.py      a student's check-in by code and by location (the hot path)
finalization.py  the finalizer's claim, bulk read and deletion of ended sessions
accounts.py      linked users' sessions, credential prompts, undeliverable marks
guards.py        throttle counters, dedupe markers, job locks
purge.py         batched scans and the purge's check-and-delete scripts
outbox.py        the durable notice stream
flood.py         the shared flood budget's cells
stores.py        the connection pool, the server checks, one of each aggregate
"""
