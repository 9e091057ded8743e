-- Telegram refused for good to deliver to this account (blocked the bot, deleted the chat):
-- notices and reminders skip it until the account links again.
ALTER TABLE users ADD COLUMN undeliverable_at timestamptz NULL;
ALTER TABLE users ADD COLUMN undeliverable_reason text NULL;
