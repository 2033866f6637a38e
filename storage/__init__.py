"""Persistent storage for mood history, conversation memory and the inbox of messages.

`storage.store.SqlMoodStore` is the store; this package imports nothing on its own, so that
reading the settings (storage/config.py) does not load SQLAlchemy and the drivers.
"""
