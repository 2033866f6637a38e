"""What /forget leaves on disk, and who may read the SQLite file.

After /forget the user's text must not be recoverable from the database's files: not from the
main file (secure_delete zeroes deleted rows) nor from the WAL (checkpointed and truncated).
The file is created readable by its owner only; SQLite gives its -wal and -shm that mode.
"""

from __future__ import annotations

import itertools
import logging
import stat
from pathlib import Path

import pytest

from engine.chat.service import ChatService
from engine.types import IncomingMessage, ReplyDone, ReplyEvent, UserKey
from storage.store import SqlMoodStore
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine

SECRET = "zebra-umbrella-4711 我的秘密很开心"  # distinctive: found only where it was written
KEPT = "walrus-kettle-9931 another user's happy words"
MESSAGE_IDS = itertools.count(1)


def on_disk(db_path: Path) -> bytes:
    """Every byte of the database as it is on disk now: the file, its WAL and shared memory."""
    files = [db_path, *(db_path.with_name(db_path.name + end) for end in ("-wal", "-shm"))]
    return b"".join(file.read_bytes() for file in files if file.exists())


def found(text: str, data: bytes) -> bool:
    # Either half alone would be a leak: the ASCII word and the UTF-8 Chinese.
    ascii_part, chinese_part = text.split(" ", 1)
    return ascii_part.encode() in data or chinese_part.encode() in data


async def say(service: ChatService, user: str, text: str) -> None:
    number = str(next(MESSAGE_IDS))
    message = IncomingMessage("telegram", user, f"chat-{user}", text, message_id=number)
    events: list[ReplyEvent] = [event async for event in service.handle(message)]
    assert isinstance(events[-1], ReplyDone)


async def test_forget_leaves_no_copy_of_the_users_text_in_the_database_files(
    scripted_engine: ScriptedEngine,
) -> None:
    # Excerpts on, so the text is in the mood events as well as in both turns (the scripted
    # reply repeats it).
    config = SYSTEM_LAYOUT.model_copy(update={"store_message_text": True})
    service = ChatService(scripted_engine.worker, scripted_engine.store, config)
    for n in range(3):
        await say(service, "42", f"{SECRET} {n}")
    await say(service, "99", KEPT)
    path = scripted_engine.db_path
    assert found(SECRET, on_disk(path))  # the reading below would see it if it were there

    await service.forget(UserKey("telegram", "42"))

    data = on_disk(path)
    assert not found(SECRET, data)
    assert found(KEPT, data)  # the other user's rows are untouched (and readable this way)
    turns = await scripted_engine.store.recent_turns(UserKey("telegram", "99"), "chat-99", 10)
    assert (turns[0].role, turns[0].content) == ("user", KEPT)
    await scripted_engine.store.close()  # closing checkpoints again: still nothing
    assert not found(SECRET, on_disk(path))


async def test_the_database_file_and_its_wal_are_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "bot.db"
    store = await SqlMoodStore.open(path)
    try:
        await store.clear_turns(UserKey("telegram", "1"), "chat")  # a write: the WAL exists
        files = [path, path.with_name("bot.db-wal"), path.with_name("bot.db-shm")]
        assert all(file.exists() for file in files)
        modes = {file.name: stat.S_IMODE(file.stat().st_mode) for file in files}
        assert modes == dict.fromkeys(modes, 0o600)
    finally:
        await store.close()


async def test_an_existing_file_others_can_read_is_warned_about_and_left_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bot.db"
    await (await SqlMoodStore.open(path)).close()
    path.chmod(0o644)  # the owner's choice, made before this bot version
    caplog.set_level(logging.WARNING, logger="storage.sqlite")
    store = await SqlMoodStore.open(path)
    await store.close()
    assert "can be read by other users (mode 644)" in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
