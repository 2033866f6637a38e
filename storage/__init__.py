"""Persistent storage for mood history and conversation memory."""

from storage.store import SqliteMoodStore

__all__ = ["SqliteMoodStore"]
