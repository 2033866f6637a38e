"""A loopback fake of the Telegram Bot API that the real python-telegram-bot client talks to.

Only what the bot uses is implemented, but those methods behave like Telegram where it
matters to the adapter: long-polling getUpdates with offset confirmation, per-chat message
ids, "message is not modified" / "message is too long" errors, 429s carrying retry_after,
and multipart uploads. Every call is recorded so tests can assert on what the bot did, and a
test can script the next answer of a method to fail.

Updates are delivered whatever `allowed_updates` says, so the adapter's own filtering of
edited messages and channel posts is what the tests exercise.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes.base import RecordingServer

T = TypeVar("T")
JSON = dict[str, Any]

DEFAULT_TOKEN = "123:TEST"
GROUP_ID = -1001234567890
CHANNEL_ID = -1009876543210
MAX_TEXT = 4096

# Form fields PTB sends as plain strings; every other field is JSON-encoded by PTB (ints,
# objects, lists), so decoding only the others keeps a text of "42" a string.
_STRING_FIELDS = frozenset(
    {
        "text", "caption", "callback_query_id", "action", "parse_mode", "url", "language_code",
        "secret_token",
    }
)  # fmt: skip


class Upload(bytes):
    """An uploaded file's bytes, with the name and type the client sent with them."""

    filename: str = ""
    content_type: str = ""


@dataclass
class ApiCall:
    method: str
    params: JSON
    files: dict[str, bytes]
    status: int  # the HTTP status the fake answered with
    at: float  # time.monotonic() when the request arrived


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None
    applied: bool = False  # the call takes effect, then the error is answered anyway
    drop: bool = False  # the connection is cut instead of answering (a network error)


class _ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


def _utf16_len(text: str) -> int:
    # Telegram entity offsets and lengths are in UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


def auto_entities(text: str) -> list[JSON]:
    """The entities Telegram would attach: a leading /command and every @mention."""
    entities: list[JSON] = []
    command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
    if command:
        entities.append({"type": "bot_command", "offset": 0, "length": command.end()})
    for match in re.finditer(r"(?<![\w/])@[A-Za-z0-9_]{3,}", text):
        entities.append(
            {
                "type": "mention",
                "offset": _utf16_len(text[: match.start()]),
                "length": _utf16_len(match.group()),
            }
        )
    return entities


def user_json(user_id: int, *, is_bot: bool = False) -> JSON:
    return {
        "id": user_id,
        "is_bot": is_bot,
        "first_name": f"User{user_id}",
        "username": f"user{user_id}",
    }


def private_chat(user_id: int) -> JSON:
    return {"id": user_id, "type": "private", "first_name": f"User{user_id}"}


def group_chat(chat_id: int = GROUP_ID) -> JSON:
    return {"id": chat_id, "type": "supergroup", "title": "Test group"}


class FakeTelegramAPI(RecordingServer[ApiCall, _Failure]):
    """Serve `/bot{token}/{method}` on 127.0.0.1 at a free port; use as an async context."""

    def __init__(
        self, token: str = DEFAULT_TOKEN, *, bot_id: int = 999000, bot_username: str = "testbot"
    ) -> None:
        super().__init__()
        self.token = token
        self.bot = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Test Bot",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.commands: list[JSON] = []
        # (chat id, bytes) of sendDocument; the bytes are an Upload (its filename, its type)
        self.documents: list[tuple[int, bytes]] = []
        self.webhook: JSON = {}  # what setWebhook last set (url, secret_token, …)
        self.blocked_by: set[int] = set()  # users who blocked the bot: sends to them get 403
        self._updates: list[JSON] = []
        self.delivered: list[JSON] = []  # every update ever queued, for redelivering
        self.confirmed: list[int] = []  # update ids, as getUpdates offsets confirmed them
        # Called with the ids a getUpdates confirms, before it is answered: the moment
        # Telegram forgets them, at which a test can look at what the bot has recorded.
        self.on_confirm: Callable[[list[int]], None] | None = None
        # A call this matches is held unanswered (and not done) until the fake closes: the
        # bot waits at a known step, where a test can kill it. Held calls are in `held`.
        # With hold_applied the call takes effect first: a send whose answer is lost.
        self.hold: Callable[[ApiCall], bool] | None = None
        self.hold_applied = False
        self.held: list[ApiCall] = []
        self._released = asyncio.Event()
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._messages: dict[tuple[int, int], JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._wakeup = asyncio.Event()
        self._closing = False
        self._handlers: dict[str, Callable[[JSON, dict[str, bytes]], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._true,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._true,
            "answerCallbackQuery": self._true,
            "close": self._true,
            "logOut": self._true,
        }

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    async def start(self) -> None:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        await self.serve(app)

    async def close(self) -> None:
        # Release pending long polls first, or the runner would wait out their timeout.
        self._closing = True
        self._released.set()
        self._wake()
        await super().close()

    def describe(self, call: ApiCall) -> str:
        return f"{call.method}({call.status})"

    # --- what tests use -----------------------------------------------------------------------

    def calls_to(self, method: str, *, ok_only: bool = False) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        times: int = 1,
        applied: bool = False,
    ) -> None:
        """Answer the next `times` calls of `method` with an error instead of doing them.

        `applied=True` does the call first and answers the error after: an edit that reached
        Telegram although the bot saw a failure, so its retry meets "message is not modified".
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429
                else "Bad Request: scripted failure"
            )
        self.script_fault(method, _Failure(status, description, retry_after, applied), times)

    def drop_next(self, method: str, *, times: int = 1) -> None:
        """Cut the connection of the next `times` calls of `method` without an answer, as a
        reset connection or a proxy that gave up would."""
        self.script_fault(method, _Failure(0, "connection reset", None, drop=True), times)

    def forbid(self, method: str, *, times: int = 1) -> None:
        """Answer as Telegram does once the user has blocked the bot."""
        self.fail_next(method, 403, description="Forbidden: bot was blocked by the user",
                       times=times)  # fmt: skip

    def bot_messages(self, chat_id: int) -> list[JSON]:
        """The bot's messages in a chat as they look now (after edits), oldest first."""
        found = [
            m
            for (chat, _), m in self._messages.items()
            if chat == chat_id and m.get("from", {}).get("id") == self.bot["id"]
        ]
        return sorted(found, key=lambda m: m["message_id"])

    def bot_texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.bot_messages(chat_id)]

    # --- injecting updates --------------------------------------------------------------------

    def push_update(self, update: JSON) -> int:
        """Queue a raw update (update_id is assigned if missing); returns its update_id."""
        update = dict(update)
        update.setdefault("update_id", next(self._update_ids))
        self._updates.append(update)
        self.delivered.append(update)
        self._wake()
        return int(update["update_id"])

    def redeliver(self, update_id: int) -> None:
        """Queue an update again, as Telegram does when its delivery was never confirmed (the
        bot crashed before its next getUpdates): a poller that starts afresh gets it again."""
        update = next(u for u in self.delivered if u["update_id"] == update_id)
        self._updates.append(copy.deepcopy(update))
        self._wake()

    def push_message(
        self,
        chat: JSON,
        sender: JSON | None,
        *,
        text: str | None = None,
        reply_to: int | None = None,
        kind: str = "message",
        **content: Any,
    ) -> JSON:
        """Store a new message in `chat` and deliver it as an update of type `kind`."""
        if text is not None:
            content["text"] = text
            content.setdefault("entities", auto_entities(text))
        message = self._store(chat, sender, reply_to=reply_to, **content)
        self.push_update({kind: message})
        return message

    def message_update(self, chat: JSON, sender: JSON, text: str) -> JSON:
        """A new message as an update, not queued: for posting to a webhook."""
        message = self._store(chat, sender, reply_to=None, text=text, entities=auto_entities(text))
        return {"update_id": next(self._update_ids), "message": message}

    def private_text(self, user_id: int, text: str, *, is_bot: bool = False) -> JSON:
        return self.push_message(
            private_chat(user_id), user_json(user_id, is_bot=is_bot), text=text
        )

    def group_text(
        self, user_id: int, text: str, *, reply_to: int | None = None, chat_id: int = GROUP_ID
    ) -> JSON:
        return self.push_message(
            group_chat(chat_id), user_json(user_id), text=text, reply_to=reply_to
        )

    def sticker(self, chat: JSON, user_id: int, *, reply_to: int | None = None) -> JSON:
        sticker = {
            "file_id": "sticker-1",
            "file_unique_id": "s1",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        return self.push_message(chat, user_json(user_id), sticker=sticker, reply_to=reply_to)

    def photo(self, chat: JSON, user_id: int, caption: str | None = None) -> JSON:
        photo = [{"file_id": "photo-1", "file_unique_id": "p1", "width": 90, "height": 90}]
        extra: JSON = {"photo": photo}
        if caption is not None:
            extra["caption"] = caption
            extra["caption_entities"] = auto_entities(caption)
        return self.push_message(chat, user_json(user_id), **extra)

    def edited_text(self, user_id: int, message: JSON, new_text: str) -> None:
        edited = dict(
            message, text=new_text, entities=auto_entities(new_text), edit_date=int(time.time())
        )
        self._messages[(message["chat"]["id"], message["message_id"])] = edited
        self.push_update({"edited_message": edited})

    def channel_post(self, text: str) -> JSON:
        chat = {"id": CHANNEL_ID, "type": "channel", "title": "Test channel"}
        return self.push_message(chat, None, text=text, kind="channel_post", sender_chat=chat)

    def press_button(self, user_id: int, message: JSON, data: str) -> str:
        """Deliver a callback query for an inline button on `message`; returns the query id."""
        query_id = str(next(self._callback_ids))
        current = self._messages[(message["chat"]["id"], message["message_id"])]
        self.push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user_json(user_id),
                    "chat_instance": f"ci{message['chat']['id']}",
                    "message": copy.deepcopy(current),
                    "data": data,
                }
            }
        )
        return query_id

    # --- plumbing -----------------------------------------------------------------------------

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _store(
        self, chat: JSON, sender: JSON | None, *, reply_to: int | None, **content: Any
    ) -> JSON:
        chat_id = int(chat["id"])
        self._chats.setdefault(chat_id, chat)
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        message: JSON = {"message_id": next(counter), "date": int(time.time()), "chat": chat}
        if sender is not None:
            message["from"] = sender
        if reply_to is not None:
            replied = dict(self._messages[(chat_id, reply_to)])
            replied.pop("reply_to_message", None)  # Telegram nests only one level
            message["reply_to_message"] = replied
        message.update(content)
        self._messages[(chat_id, message["message_id"])] = message
        return message

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await _parse_body(request)
        call = ApiCall(method, params, files, 200, time.monotonic())
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            handler = self._handlers.get(method)
            if handler is None:
                raise _ApiError(404, "Not Found")
            if self.hold is not None and self.hold(call):
                if self.hold_applied:
                    await handler(params, files)
                self.held.append(call)  # (once done: a test may kill the bot as it sees it)
                await self._released.wait()
                raise _ApiError(502, "Bad Gateway: the fake is closing")
            failure = self.take_fault(method)
            if failure is not None and failure.drop:
                call.status = 0
                assert request.transport is not None
                request.transport.abort()  # the client sees the connection reset
                return web.Response(status=502)  # never reaches the client
            if failure is not None and failure.applied:
                with contextlib.suppress(_ApiError):
                    await handler(params, files)
            if failure is not None:
                raise _ApiError(failure.status, failure.description, failure.retry_after)
            if method.startswith("send") and params.get("chat_id") in self.blocked_by:
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            result = await handler(params, files)
        except _ApiError as error:
            call.status = error.status
            body: JSON = {"ok": False, "error_code": error.status, "description": error.description}
            if error.retry_after is not None:
                body["parameters"] = {"retry_after": error.retry_after}
            return web.json_response(body, status=error.status)
        return web.json_response({"ok": True, "result": result})

    def _chat(self, params: JSON) -> JSON:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            raise _ApiError(400, "Bad Request: chat not found")
        return self._chats.get(chat_id) or private_chat(chat_id)

    async def _true(self, params: JSON, files: dict[str, bytes]) -> bool:
        return True

    async def _set_webhook(self, params: JSON, files: dict[str, bytes]) -> bool:
        if not str(params.get("url", "")).startswith("https://"):
            raise _ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self.webhook = dict(params)
        return True

    async def _delete_webhook(self, params: JSON, files: dict[str, bytes]) -> bool:
        self.webhook = {}
        return True

    async def _get_me(self, params: JSON, files: dict[str, bytes]) -> JSON:
        return self.bot

    async def _set_my_commands(self, params: JSON, files: dict[str, bytes]) -> bool:
        self.commands = list(params.get("commands") or [])
        return True

    async def _get_my_commands(self, params: JSON, files: dict[str, bytes]) -> list[JSON]:
        return self.commands

    async def _get_updates(self, params: JSON, files: dict[str, bytes]) -> list[JSON]:
        offset = int(params.get("offset") or 0)
        if offset > 0:  # confirms (drops) every update below the offset
            confirmed = [u["update_id"] for u in self._updates if u["update_id"] < offset]
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if confirmed:
                self.confirmed.extend(confirmed)
                if self.on_confirm is not None:
                    self.on_confirm(confirmed)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while not self._updates and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        if self._closing:
            return []
        return self._updates[: int(params.get("limit") or 100)]

    def _reply_to(self, chat: JSON, params: JSON) -> int | None:
        reply = params.get("reply_parameters")
        if not isinstance(reply, dict):
            return None
        if (chat["id"], reply.get("message_id")) in self._messages:
            return int(reply["message_id"])
        if reply.get("allow_sending_without_reply"):
            return None
        raise _ApiError(400, "Bad Request: message to be replied not found")

    async def _send_message(self, params: JSON, files: dict[str, bytes]) -> JSON:
        chat = self._chat(params)
        extra: JSON = {"text": _checked_text(params.get("text"))}
        if params.get("reply_markup"):
            extra["reply_markup"] = params["reply_markup"]
        return self._store(chat, self.bot, reply_to=self._reply_to(chat, params), **extra)

    async def _edit_message_text(self, params: JSON, files: dict[str, bytes]) -> JSON:
        chat = self._chat(params)
        message = self._messages.get((chat["id"], params.get("message_id")))  # type: ignore[arg-type]
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != self.bot["id"]:
            raise _ApiError(400, "Bad Request: message can't be edited")
        text = _checked_text(params.get("text"))
        markup = params.get("reply_markup")
        if text == message.get("text") and markup == message.get("reply_markup"):
            raise _ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        message["text"] = text
        message["edit_date"] = int(time.time())
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message

    async def _delete_message(self, params: JSON, files: dict[str, bytes]) -> bool:
        chat = self._chat(params)
        if self._messages.pop((chat["id"], params.get("message_id")), None) is None:  # type: ignore[arg-type]
            raise _ApiError(400, "Bad Request: message to delete not found")
        return True

    async def _send_photo(self, params: JSON, files: dict[str, bytes]) -> JSON:
        if "photo" not in files and not isinstance(params.get("photo"), str):
            raise _ApiError(400, "Bad Request: there is no photo in the request")
        extra: JSON = {
            "photo": [
                {
                    "file_id": f"photo-{len(self.calls)}",
                    "file_unique_id": "up",
                    "width": 800,
                    "height": 400,
                }
            ]
        }
        if params.get("caption"):
            extra["caption"] = params["caption"]
        chat = self._chat(params)
        return self._store(chat, self.bot, reply_to=self._reply_to(chat, params), **extra)

    async def _send_document(self, params: JSON, files: dict[str, bytes]) -> JSON:
        if "document" not in files:
            raise _ApiError(400, "Bad Request: there is no document in the request")
        self.documents.append((int(params["chat_id"]), files["document"]))
        extra: JSON = {"document": {"file_id": f"doc-{len(self.calls)}", "file_unique_id": "d"}}
        chat = self._chat(params)
        return self._store(chat, self.bot, reply_to=self._reply_to(chat, params), **extra)

    async def _edit_message_reply_markup(self, params: JSON, files: dict[str, bytes]) -> JSON:
        chat = self._chat(params)
        message = self._messages.get((chat["id"], params.get("message_id")))  # type: ignore[arg-type]
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup")
        if markup == message.get("reply_markup"):
            raise _ApiError(400, "Bad Request: message is not modified")
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message


def _checked_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise _ApiError(400, "Bad Request: message text is empty")
    if len(text) > MAX_TEXT:
        raise _ApiError(400, "Bad Request: message is too long")
    return text


def _decode(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def _parse_body(request: web.Request) -> tuple[JSON, dict[str, bytes]]:
    """Accept what Bot API clients send: query string, JSON, urlencoded or multipart."""
    params: JSON = {k: _decode(k, v) for k, v in request.query.items()}
    files: dict[str, bytes] = {}
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
    elif request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                upload = Upload(value.file.read())
                upload.filename, upload.content_type = value.filename, value.content_type
                files[key] = upload
            else:
                params[key] = _decode(key, value)
    return params, files
