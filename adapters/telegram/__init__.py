"""Telegram via python-telegram-bot. The config module imports no platform library."""
