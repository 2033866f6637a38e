"""Every error that crosses a package boundary; the chat logic maps each to a user's answer."""

from __future__ import annotations


class StorageError(RuntimeError):
    """The database is locked, unreadable or corrupt; the message says which, for the user."""


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why and what to do."""


class ModelBusy(RuntimeError):
    """Too many requests are waiting for the model."""


class ModelTimeout(RuntimeError):
    """A request took longer than its deadline."""


class ModelStopped(RuntimeError):
    """The model is not available (never started, stopping, or it failed to load)."""
