"""Platform translators (console, Telegram, Discord): platform event → chat logic → platform
reply. They use `core` types and `chat` (service, commands, texts), never the runtime."""
