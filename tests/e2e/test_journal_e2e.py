"""The journal end to end in real bot processes on the scripted model (tests/scripted_bot.py):
one `python -m` process with Telegram and Discord against their fakes — a correction pressed
on Telegram, the accounts linked across platforms, one /mood, an ephemeral /export on
Discord, /forget of both — and the console's /wrong and /export."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from engine.chat import texts
from tests.adapters.test_discord import CALLBACK, EDIT_ORIGINAL, wait_for_call
from tests.fakes.discord_api import EPHEMERAL, FakeDiscord, user_payload
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.support import bot_process

ROOT = Path(__file__).resolve().parents[2]
DISCORD_TOKEN = "fake-token"
TG_USER, DC_USER, DM_CHANNEL = 4242, 5353, 5151
ALICE = user_payload(DC_USER, "alice")
CODE = re.compile(r"/link ([A-Z2-9]{8})")
START_S = 60.0


def scripted_env(db: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_PATH": str(db), "PYTHONPATH": str(ROOT)}
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "DATABASE_URL",
                "TELEGRAM_ALLOWED_USER_IDS", "DISCORD_ALLOWED_USER_IDS"):  # fmt: skip
        env.pop(key, None)
    return {**env, **extra}


async def telegram_answer(api: FakeTelegramAPI, text: str) -> str:
    before = len(api.bot_texts(TG_USER))
    api.private_text(TG_USER, text)
    await api.wait_for(lambda: len(api.bot_texts(TG_USER)) > before, START_S, what=text)
    return api.bot_texts(TG_USER)[before]


async def discord_command(fake: FakeDiscord, name: str, **options: str | bool) -> Any:
    command = next(c for c in fake.commands[None] if c["name"] == name)
    # Option types: 5 a boolean, 3 a string.
    given = [{"name": k, "type": 5 if isinstance(v, bool) else 3, "value": v}
             for k, v in options.items()]  # fmt: skip
    data = {"id": command["id"], "name": name, "type": 1, "options": given}
    interaction = fake.interaction(user=ALICE, channel_id=DM_CHANNEL, data=data)
    await fake.dispatch("INTERACTION_CREATE", interaction)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, interaction["token"])
    ack = await wait_for_call(fake, CALLBACK, interaction["token"])
    assert ack.json["data"]["flags"] == EPHEMERAL
    return answer


async def test_corrections_one_timeline_and_export_across_platforms(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    fake = FakeDiscord(token=DISCORD_TOKEN)
    await fake.start()
    try:
        async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
            env = scripted_env(
                db,
                TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN,
                TELEGRAM_API_BASE_URL=api.base_url,
                TELEGRAM_API_FILE_URL=api.file_url,
                DISCORD_BOT_TOKEN=DISCORD_TOKEN,
                DISCORD_PROXY=fake.proxy_url,
                PARENT_SSL_CERT_FILE=os.environ["SSL_CERT_FILE"],
            )
            stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
            async with bot_process(tmp_path, env, stdout, stderr, "tests.scripted_bot") as bot:
                await fake.wait_for(lambda: fake.commands.get(None), START_S, "slash commands")
                # A label corrected on Telegram, by its buttons: once.
                api.private_text(TG_USER, "I am so happy today")
                label = await api.wait_for(
                    lambda: next(
                        (m for m in api.bot_messages(TG_USER) if m.get("reply_markup")), None
                    ),
                    START_S,
                    what="the correction buttons",
                )
                assert label is not None
                row = label["reply_markup"]["inline_keyboard"][0]
                fix = {b["callback_data"].rsplit(":", 1)[1]: b["callback_data"] for b in row}
                # One press after the other: two updates in one batch are handled side by
                # side, and either may be the one that corrects (the other is refused).
                api.press_button(TG_USER, label, fix["negative"])
                await api.wait_for(lambda: len(api.calls_to("answerCallbackQuery")) == 1)
                api.press_button(TG_USER, label, fix["neutral"])
                await api.wait_for(lambda: len(api.calls_to("answerCallbackQuery")) == 2)
                answers = api.calls_to("answerCallbackQuery")
                assert [a.params.get("text") for a in answers] == [
                    texts.correction_done("positive", "negative"), texts.CORRECTION_ALREADY,
                ]  # fmt: skip

                # A Discord DM of its own, then the accounts linked: one history.
                await fake.dispatch(
                    "MESSAGE_CREATE",
                    fake.message(channel_id=DM_CHANNEL, author=ALICE, content="so sad today"),
                )
                await fake.wait_for(
                    lambda: any(m.get("components") for m in fake.channel_messages(DM_CHANNEL)),
                    START_S,
                    what="the Discord reply, stored",
                )
                issued = await telegram_answer(api, "/link")
                code = CODE.findall(issued)[0]
                bad = await discord_command(fake, "link", code="ZZZZ2345")
                assert bad.json["content"] == texts.LINK_INVALID
                asked = await discord_command(fake, "link", code=code)
                ask = texts.link_confirm_ask(f"telegram {TG_USER}", 10)
                assert asked.json["content"] == ask
                linked = await discord_command(fake, "link", confirm=True)
                assert linked.json["content"] == texts.linked_text([f"telegram {TG_USER}"])
                mood = await telegram_answer(api, "/mood")
                assert "负面 2" in mood  # the corrected one and Discord's
                assert "正面 0" in mood

                export = await discord_command(fake, "export")
                assert export.json["content"] == texts.export_done(2, 1, 4)
                files = {f.filename.rsplit(".", 1)[1]: f.data for f in export.files}
                rows = list(csv.DictReader(io.StringIO(files["csv"].decode("utf-8-sig"))))
                assert [(r["platform"], r["corrected"]) for r in rows] == [
                    ("telegram", "negative"), ("discord", ""),
                ]  # fmt: skip
                assert len(json.loads(files["json"])["turns"]) == 4

                # /forget on Telegram, confirmed: both accounts' data goes.
                assert await telegram_answer(api, "/forget") == texts.FORGET_ASK_LINKED
                prompt = api.bot_messages(TG_USER)[-1]
                yes = prompt["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
                api.press_button(TG_USER, prompt, yes)
                await api.wait_for(
                    lambda: any("已删除" in t for t in api.bot_texts(TG_USER)), what="deleted"
                )
                after = await discord_command(fake, "mood")
                assert "还没有心情记录" in after.json["content"]

                bot.send_signal(signal.SIGTERM)
                code_ = await asyncio.wait_for(bot.wait(), 60)
    finally:
        await fake.close()
    err = stderr.read_text(errors="replace")
    assert code_ == 0, err[-3000:]
    assert "Traceback" not in err


async def test_console_wrong_and_export(tmp_path: Path) -> None:
    env = scripted_env(tmp_path / "data" / "bot.db")
    lines = ["I am so happy today", "/wrong neutral", "/wrong negative", "/mood", "/export"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.scripted_bot", "chat", "--jsonl", "--user", "alice",
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate("\n".join(lines).encode() + b"\n"), 120)
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]
    _, wrong, again, mood, export = [json.loads(line) for line in out.decode().splitlines()]
    assert wrong["text"] == texts.correction_done("positive", "neutral")
    assert again["text"] == texts.CORRECTION_ALREADY
    assert "中性 1" in mood["text"]
    csv_path, json_path = (Path(p) for p in export["files"])
    assert csv_path.parent == tmp_path / "data"  # beside the database, as the charts are
    [row] = csv.DictReader(csv_path.open(encoding="utf-8-sig"))
    assert (row["shown"], row["counted"]) == ("positive", "neutral")
    assert json.loads(json_path.read_text())["turns"][1]["role"] == "assistant"
