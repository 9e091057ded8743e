"""Presentation shared by `bot/` and `handlers/`: translations, message text and keyboards."""
