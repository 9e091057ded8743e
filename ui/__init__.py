"""Presentation shared by `bot/` and `handlers/`: translations, message text, keyboards, button
payloads and conversation states. Imports `services` and `dal` only, never `handlers` or `bot`."""
