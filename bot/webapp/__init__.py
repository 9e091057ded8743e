"""The Mini App: pages Telegram opens inside the chat, served by the bot's own web app."""
