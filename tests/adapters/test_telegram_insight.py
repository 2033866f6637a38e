"""/mood why, /mood week and the weekly digest on the Telegram fake (real python-telegram-bot,
its JobQueue included)."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from adapters.telegram.adapter import TelegramAdapter, TelegramConfig
from adapters.telegram.digest import JOB_NAME
from engine.chat import texts
from engine.chat.service import ChatService
from tests.adapters.test_telegram import (  # noqa: F401 - fixtures
    USER,
    MakeAdapter,
    api,
    bot,
    key,
    make_adapter,
    wait_text,
)
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine, restarted_service
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI

BLOCKER, THIRD = 333, 444


async def test_why_explains_the_latest_message_or_says_the_text_is_gone(
    bot: TelegramAdapter,  # noqa: F811
    api: FakeTelegramAPI,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    api.private_text(USER, "I lost my keys, but the party was great!")
    await wait_text(api, USER, "reply to: I lost my keys")
    api.private_text(USER, "/mood why")
    answer = await wait_text(api, USER, "🔎 Why")
    assert "“but the party was great!” pulled the score towards positive (0.90 → 0.10" in answer

    scripted_engine.service.recent.forget(key(USER))  # as after 30 minutes, or a restart
    api.private_text(USER, "/mood why")
    await wait_text(api, USER, texts.why_no_text(30))


async def test_week_answers_with_the_models_text_and_a_chart(
    bot: TelegramAdapter,  # noqa: F811
    api: FakeTelegramAPI,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    api.private_text(USER, "I love this")
    await wait_text(api, USER, "reply to: I love this")
    scripted_engine.runner.reply_text = "A bright week. Keep it up."
    api.private_text(USER, "/mood week")
    await wait_text(
        api,
        USER,
        "📅 Your week\n\nIn the last 7 days you sent 1 message (1 positive), 100% "
        "positive. A bright week.\n\n😄 1",
    )
    photo = await api.wait_for(lambda: api.calls_to("sendPhoto"), timeout=30, what="sendPhoto")
    assert photo[0].files["photo"].startswith(b"\x89PNG")


async def test_the_weekly_job_is_registered_at_the_local_day_and_time(
    api: FakeTelegramAPI,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    chat = SYSTEM_LAYOUT.model_copy(
        update={"timezone": "Asia/Shanghai", "digest_day": "friday", "digest_time": "08:30"}
    )
    service = ChatService(scripted_engine.worker, scripted_engine.store, chat)
    adapter = TelegramAdapter(service, telegram_config(api))
    await adapter.start()
    try:
        assert adapter._app is not None
        assert adapter._app.job_queue is not None
        [job] = adapter._app.job_queue.get_jobs_by_name(JOB_NAME)
        assert job.next_t is not None
        local = job.next_t.astimezone(ZoneInfo("Asia/Shanghai"))
        assert (local.strftime("%A"), local.hour, local.minute) == ("Friday", 8, 30)
        assert local > datetime.now(local.tzinfo)
    finally:
        await adapter.stop()


def telegram_config(api: FakeTelegramAPI) -> TelegramConfig:  # noqa: F811
    return TelegramConfig.model_construct(
        token=DEFAULT_TOKEN,
        api_base_url=api.base_url,
        api_file_url=api.file_url,
        edit_interval_s=0.05,
        group_edit_interval_s=0.05,
        poll_timeout_s=10.0,
    )


async def test_digest_opt_in_survives_a_restart_and_a_blocked_user_is_skipped(
    make_adapter: MakeAdapter,  # noqa: F811
    api: FakeTelegramAPI,  # noqa: F811
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await make_adapter()
    for user in (USER, BLOCKER, THIRD):
        api.private_text(user, "what a great day")
        await wait_text(api, user, "reply to: what a great day")
        api.private_text(user, "/digest on")
        await wait_text(api, user, "every Sunday at 20:00 (UTC)")
    await first.stop()

    async with restarted_service(scripted_engine) as service:
        restarted = TelegramAdapter(service, telegram_config(api))
        await restarted.start()
        try:
            api.blocked_by.add(BLOCKER)
            caplog.set_level(logging.INFO, logger="engine.chat.digest")
            run = await restarted.send_digests()
        finally:
            await restarted.stop()
    assert run.sent == [key(USER), key(THIRD)]
    assert run.unreachable == [key(BLOCKER)]
    assert run.failed == []
    for user in (USER, THIRD):
        digest = await wait_text(api, user, "📬 Your weekly mood digest")
        assert "😄 1" in digest
    sent_photos = {c.params["chat_id"] for c in api.calls_to("sendPhoto", ok_only=True)}
    assert sent_photos == {USER, THIRD}
    assert [c.status for c in api.calls_to("sendMessage") if c.params["chat_id"] == BLOCKER][
        -1
    ] == 403
    gone = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
