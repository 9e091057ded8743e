"""Presentation shared by `bot/` and `handlers/`: message text, keyboards, button payloads and
conversation states. Imports `services` and `dal` only, never `handlers` or `bot`."""
