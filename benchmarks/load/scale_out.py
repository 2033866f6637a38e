"""Several bot processes sharing one PostgreSQL database, under load and a crash.

    python -m benchmarks.load.scale_out [--processes 2] [--users 8] [--messages 3] [--kill]
                              [--burst] [--database-url URL] [--max-new-tokens 32]
                              [--scripted] [--resume-interval-s 5]

What runs: a throwaway PostgreSQL 15 cluster (the tests' tests/postgres.py; or an empty
database at --database-url), a loopback fake of Telegram's Bot API (tests/fakes), and N
`python -m bot` processes in Telegram webhook mode on that database. Their model settings
come from the environment: with BACKEND=openai and a model server all processes share one
model; otherwise each process loads its own (BACKEND=auto: llama.cpp). `--scripted` runs
them on the tests' scripted model instead (seconds, no model; what the test of this bench
uses). The bench plays Telegram and the load balancer: U users each send M messages one
after another (the next once the previous one is answered), each posted to the replicas in
turn; every fourth message is posted to a second replica as well, as a retried delivery.
With --burst, each user sends all M messages at once instead (each to the next replica), and
waits for the answers. With --kill, one replica is `kill -9`ed while it is writing a reply,
once a third of the messages are answered (with --burst: at the first streamed edit, while
it holds several users' messages); from then on the load balancer sends everything to the
others, and the bench waits (up to --recover-timeout-s) for them to finish what the killed
one had taken: `recovered`, and when (`takeover_s`: from the kill until each was stored,
the generation included).

Checked afterwards, per message, from the database (STORE_MESSAGE_TEXT=true, so every mood
row names its message) and from what the fake Telegram shows:
- duplicated: more than one mood row, or more than one stored exchange, for one message;
  more bot messages in a chat than messages answered there, apart from a message left
  behind by the kill whose replacement says so (`cut_off_copies_owned_up`: Telegram made it
  before the bot could record its id, docs/reliability.md);
- lost: a message with no trace (no inbox row), or received by a live replica and never
  finished. Messages that were in the killed process when it died are counted apart:
  `unfinished` when its inbox row stays 'received' (crash recovery, #18, failed to finish
  it in time); those finished by the others after the kill are `recovered`. A message whose
  webhook post was answered 200 and has no inbox row is lost too, the killed process's
  included: the bot records a message before its webhook answers (docs/deployment.md,
  "Crash-safe delivery");
- consistent: no mood row or turn of an unfinished message (an exchange is stored whole or
  not at all), every stored exchange has its inbox row 'done', turns come in pairs;
- in order: per user, the answers in the chat (the bot message each inbox row names as its
  reply) and the stored user turns come in the order the messages were sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import describe_machine, table, write_json
from benchmarks.messages import messages
from engine.chat.texts import CUT_OFF_COPY

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-scale-out-webhook-secret-32"
HOOK_PATH = "telegram"
TOKEN = "123:BENCH"
FIRST_USER = 7000


@dataclass
class Message:
    user: int
    index: int
    text: str  # unique: it starts with the message's own tag
    message_id: int = 0
    posted_to: list[int] = field(default_factory=list)  # replicas it was posted to
    sent_at: float | None = None
    resolved_at: float | None = None
    seen_done_at: float | None = None  # when the bench saw its inbox row done
    state: str = "unsent"  # inbox state at the end: none | received | done


@dataclass
class Progress:
    total: int
    answered: int = 0
    a_third: asyncio.Event = field(default_factory=asyncio.Event)  # of the messages answered

    def one_answered(self) -> None:
        self.answered += 1
        if self.answered >= self.total / 3:
            self.a_third.set()


@dataclass
class Replica:
    number: int
    port: int
    process: asyncio.subprocess.Process
    log: Path
    alive: bool = True

    @property
    def hook(self) -> str:
        return f"http://127.0.0.1:{self.port}/{HOOK_PATH}"


def plan(users: int, per_user: int) -> list[Message]:
    texts = [m.text for m in messages(users * per_user)]
    return [
        Message(FIRST_USER + u, i, f"[u{u}#{i}] {texts[u * per_user + i]}")
        for u in range(users)
        for i in range(per_user)
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replica_env(args: argparse.Namespace, database_url: str, api_url: str, port: int) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISCORD_BOT_TOKEN", "DATABASE_PATH")}  # fmt: skip
    threads = str(max(1, (os.cpu_count() or 1) // args.processes))
    env.setdefault("TORCH_THREADS", threads)  # N processes share the cores
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        STORE_MESSAGE_TEXT="true",  # every mood row names its message
        MAX_NEW_TOKENS=str(args.max_new_tokens),
        REQUEST_TIMEOUT_S="600",  # a loaded CPU is slow; a timeout is not what we measure
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=f"{api_url}/bot",
        TELEGRAM_API_FILE_URL=f"{api_url}/file/bot",
        TELEGRAM_WEBHOOK_URL=f"https://bot.example.test/{HOOK_PATH}",
        TELEGRAM_WEBHOOK_LISTEN=f"127.0.0.1:{port}",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_STOP_GRACE_S="60",
        SCRIPTED_DELAY_S="0.05",
        RESUME_INTERVAL_S=str(args.resume_interval_s),
    )
    return env


@contextlib.asynccontextmanager
async def replicas(
    args: argparse.Namespace, database_url: str, api_url: str, folder: Path
) -> AsyncIterator[list[Replica]]:
    module = "tests.scripted_bot" if args.scripted else "bot"
    started: list[Replica] = []
    try:
        for number in range(args.processes):
            port = _free_port()
            log = folder / f"replica{number}.log"
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", module, cwd=folder, stdin=asyncio.subprocess.DEVNULL,
                    stdout=out, stderr=out, env=replica_env(args, database_url, api_url, port),
                )  # fmt: skip
            started.append(Replica(number, port, process, log))
        for replica in started:
            await _listening(replica, timeout_s=600)  # the first start may convert the model
        yield started
    finally:
        for replica in started:
            if replica.process.returncode is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in started:
            try:
                await asyncio.wait_for(replica.process.wait(), 120)
            except TimeoutError:
                replica.process.kill()
                await replica.process.wait()


async def _listening(replica: Replica, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if replica.process.returncode is not None:
            tail = replica.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"replica {replica.number} exited early:\n{tail}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", replica.port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"replica {replica.number} did not start in {timeout_s:.0f} s")


class Balancer:
    """Round-robin over the live replicas; a replica that refuses is taken out."""

    def __init__(self, pool: list[Replica]) -> None:
        self.pool = pool
        self._turn = itertools.count()

    def live(self) -> list[Replica]:
        return [r for r in self.pool if r.alive]

    async def post(self, update: dict[str, Any], message: Message, copies: int = 1) -> None:
        import aiohttp

        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        sent = 0
        async with aiohttp.ClientSession() as session:
            while sent < copies:
                live = self.live()
                if not live:
                    raise RuntimeError("no replica is left")
                replica = live[next(self._turn) % len(live)]
                if sent and replica.number in message.posted_to:
                    if len(live) == 1:
                        return  # no second replica to retry at
                    continue
                try:
                    async with session.post(replica.hook, json=update, headers=headers) as reply:
                        if reply.status != 200:
                            raise RuntimeError(f"replica {replica.number}: HTTP {reply.status}")
                except aiohttp.ClientConnectionError:
                    replica.alive = False  # the balancer's health check, in short
                    continue
                message.posted_to.append(replica.number)
                sent += 1


async def inbox_state(pool: Any, message: Message) -> str:
    state = await pool.fetchval(
        "SELECT state FROM inbox WHERE platform = 'telegram' AND chat_id = $1 AND message_id = $2",
        str(message.user),
        str(message.message_id),
    )
    return state or "none"


async def user_session(
    api: Any,
    balancer: Balancer,
    pool: Any,
    items: list[Message],
    progress: Progress,
    burst: bool = False,
    patience_s: float = 0.0,
) -> None:
    from tests.fakes.telegram_api import private_chat, user_json

    if burst:
        for message in items:
            update = api.message_update(private_chat(message.user), user_json(message.user),
                                        message.text)  # fmt: skip
            message.message_id = update["message"]["message_id"]
            message.sent_at = time.monotonic()
            await balancer.post(update, message)
        await asyncio.gather(*(settled(balancer, pool, m, progress, patience_s) for m in items))
        return
    for n, message in enumerate(items):
        update = api.message_update(private_chat(message.user), user_json(message.user),
                                    message.text)  # fmt: skip
        message.message_id = update["message"]["message_id"]
        message.sent_at = time.monotonic()
        await balancer.post(update, message, copies=2 if (message.user + n) % 4 == 0 else 1)
        while True:
            state = await inbox_state(pool, message)
            dead = [not balancer.pool[r].alive for r in message.posted_to]
            if state == "done" or all(dead) or (any(dead) and state == "received"):
                break  # answered, or it may have died with its replica: the user moves on
            await asyncio.sleep(0.2)
        message.resolved_at = time.monotonic()
        if state == "done":
            progress.one_answered()


async def settled(
    balancer: Balancer, pool: Any, message: Message, progress: Progress, patience_s: float
) -> None:
    """Wait until the message is answered (seen within 0.2 s), or for `patience_s` more once
    the replicas it was posted to are dead (the others are to take it over)."""
    given_up_at: float | None = None
    while True:
        state = await inbox_state(pool, message)
        if state == "done":
            message.seen_done_at = time.monotonic()
            break
        if given_up_at is None and all(not balancer.pool[r].alive for r in message.posted_to):
            given_up_at = time.monotonic() + patience_s
        if given_up_at is not None and time.monotonic() > given_up_at:
            break
        await asyncio.sleep(0.2)
    message.resolved_at = time.monotonic()
    if state == "done":
        progress.one_answered()


async def killer(
    balancer: Balancer, pool: Any, sent: list[Message], progress: Progress, api: Any = None
) -> dict[str, Any]:
    """kill -9 replica 0 once a third of the messages are answered, while it is replying; with
    `api` (a burst), at the first streamed edit."""
    victim = balancer.pool[0]
    if api is not None:
        await api.wait_for(lambda: api.calls_to("editMessageText"), 1800, "a streamed edit")
        in_flight = [m for m in sent if m.posted_to == [victim.number]]
    else:
        await progress.a_third.wait()
    while api is None:
        # Posted to the victim alone and not finished: the victim is working on it. (And not
        # its user's last, so that what this user sends next shows the others take over.)
        in_flight = [m for m in sent if m.posted_to == [victim.number] and m.resolved_at is None
                     and any(o.user == m.user and o.index > m.index for o in sent)
                     and await inbox_state(pool, m) == "received"]  # fmt: skip
        if in_flight:
            break
        await asyncio.sleep(0.05)
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    victim.alive = False
    at, wall_at = time.monotonic(), time.time()
    # What it had taken and not finished: for the others to finish (#18).
    mine = [m for m in sent if victim.number in m.posted_to]
    left = [m.text for m in mine if await inbox_state(pool, m) == "received"]
    return {"killed": victim.number, "at": at, "wall_at": wall_at,
            "answered_before": progress.answered, "in_flight": [m.text for m in in_flight],
            "left": left}  # fmt: skip


async def recovered(
    pool: Any, sent: list[Message], fault: dict[str, Any] | None, timeout_s: float
) -> dict[str, Any]:
    """Wait until the messages the killed replica left 'received' are done (the others'
    resume sweeps take them over), or timeout_s; how many were, and how long it took."""
    if fault is None:
        return {"left_by_the_kill": None, "recovered": None, "recovered_within_s": None}
    left = [m for m in sent if m.text in fault["left"]]
    deadline = time.monotonic() + timeout_s
    pending = list(left)
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        pending = [m for m in pending if await inbox_state(pool, m) == "received"]
    return {
        "left_by_the_kill": len(left),
        "recovered": len(left) - len(pending),
        "recovered_within_s": round(time.monotonic() - fault["at"], 1) if left else None,
    }


async def database_rows(database_url: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        moods = await conn.fetch("SELECT excerpt, created_at FROM mood_events")
        turns = await conn.fetch("SELECT role, content, created_at FROM turns")
        inbox = await conn.fetch("SELECT chat_id, message_id, state, reply_ref, done_at FROM inbox")
    finally:
        await conn.close()
    return {"moods": moods, "turns": turns, "inbox": inbox}


def check(sent: Sequence[Message], rows: dict[str, Any], shown: dict[int, list[str]],
          killed: int | None) -> dict[str, Any]:  # fmt: skip
    """The per-message verdicts and the totals (see the module's docstring)."""
    moods = Counter(row["excerpt"] for row in rows["moods"])
    user_turns = Counter(row["content"] for row in rows["turns"] if row["role"] == "user")
    states = {(row["chat_id"], row["message_id"]): row["state"] for row in rows["inbox"]}
    totals = Counter[str]()
    problems: list[str] = []
    for m in sent:
        m.state = states.get((str(m.user), str(m.message_id)), "none")
        mood_rows, exchanges = moods[m.text[:200]], user_turns[m.text]
        totals["duplicated_mood_rows"] += max(0, mood_rows - 1)
        totals["duplicated_exchanges"] += max(0, exchanges - 1)
        if m.state == "done":
            totals["answered"] += 1
            totals["failed_before_label"] += mood_rows == 0
        elif m.state == "received" and killed is not None and killed in m.posted_to:
            totals["unfinished_in_killed"] += 1
            if mood_rows or exchanges:
                problems.append(f"half-stored exchange of an unfinished message: {m.text!r}")
        else:
            totals["lost"] += 1
            problems.append(f"lost ({m.state}, posted to {m.posted_to}): {m.text!r}")
        if exchanges and m.state != "done":
            problems.append(f"an exchange stored without 'done': {m.text!r}")
    roles = Counter(row["role"] for row in rows["turns"])
    if roles["user"] != roles["assistant"]:
        problems.append(f"turns are not in pairs: {dict(roles)}")
    for user, texts in shown.items():
        mine = [m for m in sent if m.user == user]
        most = sum(m.state == "done" for m in mine) + sum(m.state == "received" for m in mine)
        # A kill between Telegram making a message and the bot recording its id leaves that
        # message behind; the answer sent in its place says so (CUT_OFF_COPY): counted apart.
        owned_up = sum(any(note in text for note in CUT_OFF_COPY.values()) for text in texts)
        totals["cut_off_copies_owned_up"] += min(owned_up, max(0, len(texts) - most))
        totals["duplicated_replies"] += max(0, len(texts) - most - owned_up)
    if totals["duplicated_mood_rows"] or totals["duplicated_exchanges"]:
        problems.append("a message was stored twice")
    if totals["duplicated_replies"]:
        problems.append("a message was answered twice on Telegram")
    disorder = out_of_order(sent, rows)
    totals["users_out_of_order_in_chat"] = len(disorder["chat"])
    totals["users_out_of_order_in_store"] = len(disorder["store"])
    for where, users in disorder.items():
        if users:
            problems.append(f"answered out of order in the {where}: users {users}")
    return {"totals": dict(totals), "problems": problems}


def out_of_order(sent: Sequence[Message], rows: dict[str, Any]) -> dict[str, list[int]]:
    """Per place (the chat, the store), the users whose answers are not in the order their
    messages were sent: in the chat by the bot message each inbox row names as its reply
    (Telegram numbers a chat's messages in order), in the store by the user turns' order."""
    refs = {(row["chat_id"], row["message_id"]): row["reply_ref"] for row in rows["inbox"]}
    stored = sorted(
        (row for row in rows["turns"] if row["role"] == "user"), key=lambda r: r["created_at"]
    )
    position = {row["content"]: n for n, row in enumerate(stored)}
    found: dict[str, list[int]] = {"chat": [], "store": []}
    for user in sorted({m.user for m in sent}):
        mine = sorted((m for m in sent if m.user == user), key=lambda m: m.message_id)
        shown = [refs.get((str(m.user), str(m.message_id))) for m in mine]
        shown_at = [int(ref) for ref in shown if ref is not None and ref.isdigit()]
        if shown_at != sorted(shown_at):
            found["chat"].append(user)
        kept = [position[m.text] for m in mine if m.text in position]
        if kept != sorted(kept):
            found["store"].append(user)
    return found


def takeover_times(
    sent: Sequence[Message], fault: dict[str, Any] | None, logs: list[str]
) -> dict[str, Any]:
    """Seconds from the kill until each message the killed replica left was started again by
    another replica (its log's first "resuming message …" line) and, with --burst, until the
    bench saw it stored (polled every 0.2 s)."""
    if fault is None:
        return {"takeover_started_s": None, "takeover_s": None}
    resumed: dict[tuple[str, str], float] = {}
    for line in (line for log in logs for line in log.splitlines()):
        found = _RESUMING.match(line)
        if found:
            stamp, message_id, chat_id = found.groups()
            # logging's asctime is local time, as time.time() is read here
            at = (
                time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000
            )
            resumed.setdefault((chat_id, message_id), at)
    started, stored = [], []
    for m in sent:
        key = (str(m.user), str(m.message_id))
        if m.text not in fault["left"]:
            continue
        if key in resumed:
            started.append(round(resumed[key] - fault["wall_at"], 1))
        if m.seen_done_at is not None:
            stored.append(round(m.seen_done_at - fault["at"], 1))
    return {"takeover_started_s": sorted(started), "takeover_s": sorted(stored)}


_RESUMING = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*resuming message (\S+) in telegram chat (\S+),"
)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    from tests.fakes.telegram_api import FakeTelegramAPI
    from tests.postgres import postgres_cluster

    work = plan(args.users, args.messages)
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="scale-") as temp:
        database_url = args.database_url
        if not database_url:
            cluster = stack.enter_context(postgres_cluster())
            database_url = cluster.new_database()
        async with (
            FakeTelegramAPI(TOKEN) as api,
            replicas(
                args, database_url, f"http://127.0.0.1:{api.port}", Path(temp)
            ) as pool_of_replicas,
        ):
            balancer = Balancer(pool_of_replicas)
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
            progress = Progress(len(work))
            load_before = os.getloadavg()[0]
            start = time.monotonic()
            try:
                by_user = {u: [m for m in work if m.user == u] for u in {m.user for m in work}}
                sessions = [user_session(api, balancer, pool, items, progress, args.burst,
                                         args.recover_timeout_s)
                            for items in by_user.values()]  # fmt: skip
                kill_task = (asyncio.create_task(killer(balancer, pool, work, progress,
                                                        api if args.burst else None))
                             if args.kill else None)  # fmt: skip
                await asyncio.wait_for(asyncio.gather(*sessions), args.timeout_s)
                wall = time.monotonic() - start
                fault = None
                if kill_task is not None:
                    if not kill_task.done():  # the load ended before a moment to kill came
                        kill_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        fault = await kill_task
                recovery = await recovered(pool, work, fault, args.recover_timeout_s)
            finally:
                await pool.close()
            load_after = os.getloadavg()[0]
            shown = {u: api.bot_texts(u) for u in by_user}
        # The survivors were stopped cleanly (SIGTERM) before the database is read.
        rows = await database_rows(database_url)
        logs = {r.number: r.log.read_text(errors="replace") for r in pool_of_replicas}
    ready = [line.partition("model ready: ")[2] for line in logs[0].splitlines()
             if "model ready: " in line]  # fmt: skip
    verdict = check(work, rows, shown, fault["killed"] if fault else None)
    # Sent after the kill, and answered: by the replicas left.
    after_kill = [m for m in work if fault and m.sent_at and m.sent_at > fault["at"]
                  and m.state == "done"]  # fmt: skip
    return {
        "processes": args.processes,
        "users": args.users,
        "messages": len(work),
        "model": ready[0] if ready else "?",  # as the first replica's log names it
        "max_new_tokens": args.max_new_tokens,
        "wall_s": round(wall, 1),
        "answered_per_min": round(verdict["totals"].get("answered", 0) / wall * 60, 1),
        "posted_twice": sum(len(m.posted_to) > 1 for m in work),
        "fault": fault,
        "answered_without_the_killed_replica": len(after_kill) if fault else None,
        **recovery,
        **takeover_times(work, fault, list(logs.values())),
        **verdict,
        "load_avg_before_after": [load_before, load_after],
        "machine": describe_machine(),
        "rows": [asdict(m) for m in work],
        "replica_log_tails": {n: log[-3000:] for n, log in logs.items()}
        if verdict["problems"]
        else {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load.scale_out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--messages", type=int, default=3, help="messages per user")
    parser.add_argument("--kill", action="store_true", help="kill -9 one replica mid-reply")
    parser.add_argument("--burst", action="store_true",
                        help="each user sends all messages at once")  # fmt: skip
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--scripted", action="store_true", help="the scripted model, no LLM")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--resume-interval-s", type=float, default=5.0,
                        help="RESUME_INTERVAL_S of the replicas")  # fmt: skip
    parser.add_argument("--recover-timeout-s", type=float, default=300,
                        help="how long the others get to finish the killed one's work")  # fmt: skip
    parser.add_argument("--json", default=None, help="default: benchmarks/results/scale_out.json")
    args = parser.parse_args(argv)
    if args.kill and args.processes < 2:
        parser.error("--kill needs at least two processes")
    result = asyncio.run(run(args))
    totals = result["totals"]
    keys = ["answered", "failed_before_label", "unfinished_in_killed", "lost",
            "duplicated_mood_rows", "duplicated_exchanges", "duplicated_replies",
            "users_out_of_order_in_chat", "users_out_of_order_in_store"]  # fmt: skip
    rows = [["processes", result["processes"]], ["model", result["model"]], ["users x messages",
            f"{result['users']} x {len(result['rows']) // result['users']}"],
            ["posted to two replicas", result["posted_twice"]],
            *[[key, totals.get(key, 0)] for key in keys],
            ["killed mid-reply", "yes" if result["fault"] else "no"],
            ["answered by the others after the kill",
             result["answered_without_the_killed_replica"]],
            ["left 'received' by the kill / recovered by the others",
             f"{result['left_by_the_kill']} / {result['recovered']}"],
            ["all recovered by s after the kill (looked at once the load ended)",
             result["recovered_within_s"]],
            ["each taken-over message started again, s after the kill",
             result["takeover_started_s"]],
            ["each taken-over message stored, s after the kill", result["takeover_s"]],
            ["wall s", result["wall_s"]], ["answered / min", result["answered_per_min"]],
            ["load avg before / after", result["load_avg_before_after"]]]  # fmt: skip
    print(table(["", "value"], rows))
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    write_json(args.json, "scale_out", result)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
