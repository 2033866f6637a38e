"""A loopback fake of Discord's gateway and REST API that the real discord.py client talks to.

Only what the bot uses is implemented, but it behaves like Discord where it matters to the
adapter: the gateway handshake (HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RECONNECT
and RESUME), message create/edit with the 2000-character limit, interaction callbacks that
must come once and within 3 s, the interaction webhook (@original, followups), multipart
uploads, and 429s shaped like Discord's (a `Via` header decides whether discord.py retries).

Every REST call is recorded. Tests inject MESSAGE_CREATE / INTERACTION_CREATE dispatches and
can script the next answers of a route to fail.

The client reaches it as it reaches Discord (https://discord.com/api/v10, wss://gateway.discord.gg)
through `proxy_url`: a TLS-terminating CONNECT proxy (tests/fakes/tls_proxy.py) in front of
this plain server, so the bot is configured exactly as in production plus DISCORD_PROXY.

Frames are plain JSON text even though discord.py asks for `compress=zlib-stream`: its gateway
only decompresses BINARY frames and parses TEXT frames as they are.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes.base import GUARD_S, RecordingServer
from tests.fakes.tls_proxy import TlsProxy, loopback_ca

T = TypeVar("T")
JSON = dict[str, Any]

API_PREFIX = "/api/v10"
GATEWAY_URL = "wss://gateway.discord.gg"
MAX_CONTENT = 2000
INTERACTION_ACK_WINDOW_S = 3.0
EPHEMERAL = 1 << 6
LOADING = 1 << 7
_DISCORD_EPOCH_MS = 1420070400000

# Interaction callback types (https://discord.com/developers/docs/interactions/receiving-and-responding)
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7


@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class ApiCall:
    method: str
    route: str  # the route template, e.g. "PATCH /channels/{channel_id}/messages/{message_id}"
    path: str  # the concrete path, without the /api/v10 prefix
    params: JSON  # match_info of the route
    json: Any  # the JSON body, or multipart payload_json
    files: list[UploadedFile]
    status: int  # what the fake answered
    at: float  # time.monotonic() when the request arrived


@dataclass
class _Fault:
    status: int
    retry_after: float
    via: bool


@dataclass
class _Session:
    id: str
    seq: int = 0


@dataclass
class _Interaction:
    payload: JSON
    dispatched_at: float
    acknowledged: bool = False
    message_id: int | None = None  # what @original refers to


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    query: dict[str, str]
    session: _Session | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


def user_payload(user_id: int, name: str, *, bot: bool = False) -> JSON:
    return {
        "id": str(user_id),
        "username": name,
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # discord.py only parses a body whose Content-Type is exactly "application/json";
    # aiohttp's json_response would add "; charset=utf-8".
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


class FakeDiscord(RecordingServer[ApiCall, _Fault]):
    """One bot user, one application, optional guilds with text channels, DMs by channel id."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        bot_id: int = 900000000000000001,
        application_id: int = 900000000000000002,
        guilds: dict[int, list[int]] | None = None,  # guild id -> its text channel ids
        heartbeat_interval_ms: int = 41250,
    ) -> None:
        super().__init__()
        self.token = token
        self.bot = user_payload(bot_id, "MoodBot", bot=True)
        self.bot_id = bot_id
        self.application_id = application_id
        self.guilds = guilds or {}
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.reject_intents = False  # answer IDENTIFY with 4014 "disallowed intents"
        self.closed_dms: set[int] = set()  # users who take no DMs from the bot (403, 50007)
        self.dm_recipients: dict[int, int] = {}  # DM channel id -> its user

        self.messages: dict[int, JSON] = {}  # every message the bot created, by id
        self.history: dict[int, list[JSON]] = {}  # channel id -> its users' messages
        self.users: dict[int, JSON] = {}  # the authors seen, by id
        self.files: dict[int, bytes] = {}  # attachment id -> bytes
        self.commands: dict[int | None, list[JSON]] = {}  # guild id (None: global) -> commands
        self.identifies: list[JSON] = []
        self.resumes: list[JSON] = []
        self.connections: list[_Connection] = []

        self._interactions: dict[int, _Interaction] = {}
        self._tokens: dict[str, int] = {}  # interaction token -> interaction id
        self._session: _Session | None = None
        self._live: _Connection | None = None
        self._live_event = asyncio.Event()
        self._ids = itertools.count(1)
        self.proxy: TlsProxy | None = None
        # A REST call this matches is held unanswered until the fake closes (after taking
        # effect, with hold_applied: a send whose answer is lost), for a test to kill the bot
        # at a known step. Held calls are in `held`.
        self.hold: Callable[[ApiCall], bool] | None = None
        self.hold_applied = False
        self.held: list[ApiCall] = []
        self._released = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def proxy_url(self) -> str:
        """What DISCORD_PROXY is set to: the client then talks to Discord's own URLs."""
        assert self.proxy is not None, "start() first"
        return self.proxy.url

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/", self._gateway)
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            (
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._put_commands,
            ),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("GET", "/channels/{channel_id}/messages", self._get_messages),
            ("POST", "/channels/{channel_id}/messages", self._create_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("GET", "/webhooks/{application_id}/{token}/messages/@original", self._get_original),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/@original",
                self._edit_original,
            ),
            ("POST", "/webhooks/{application_id}/{token}", self._followup),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._edit_followup,
            ),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, API_PREFIX + path, handler)
        await self.serve(app)
        self.proxy = TlsProxy(loopback_ca(), self.port)
        await self.proxy.start()

    async def close(self) -> None:
        self._released.set()
        if self.proxy is not None:
            await self.proxy.close()
        for connection in self.connections:
            if not connection.ws.closed:
                await connection.ws.close(code=1001)
        await super().close()

    # --- what tests drive -------------------------------------------------------------------

    def snowflake(self) -> int:
        ms = int(time.time() * 1000) - _DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    def fail(
        self,
        method: str,
        route: str,
        *,
        times: int = 1,
        status: int = 429,
        retry_after: float = 0.2,
        via: bool = True,
    ) -> None:
        """Answer the next `times` calls of `method route` with an error (default a 429).

        Discord's real 429s pass through its proxy and carry `Via`; discord.py only waits out
        and retries a 429 that has it (without, it assumes a Cloudflare ban and raises).
        """
        for _ in range(times):
            self.script_fault(f"{method} {route}", _Fault(status, retry_after, via))

    async def dispatch(self, event: str, data: JSON, timeout: float = GUARD_S) -> None:
        """Send a DISPATCH on the live, identified (or resumed) gateway connection."""
        await asyncio.wait_for(self._live_event.wait(), timeout)
        connection, session = self._live, self._session
        assert connection is not None
        assert session is not None
        if event == "INTERACTION_CREATE":
            self._register_interaction(data)
        if event == "MESSAGE_CREATE":
            self.post_unseen(data)
        session.seq += 1
        await connection.ws.send_str(json.dumps({"op": 0, "t": event, "s": session.seq, "d": data}))

    async def force_reconnect(self) -> None:
        """Ask the client to reconnect (op 7); it should come back with a RESUME."""
        await asyncio.wait_for(self._live_event.wait(), 5.0)
        connection = self._live
        assert connection is not None
        self._live, self._live_event = None, asyncio.Event()
        await connection.ws.send_str(json.dumps({"op": 7, "d": None}))

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the live gateway websocket from Discord's side with `code` (4000, "unknown
        error", is resumable); the client should come back with a RESUME. Dispatches sent
        meanwhile wait for the resumed connection, as Discord replays what a resume missed."""
        await asyncio.wait_for(self._live_event.wait(), 5.0)
        connection = self._live
        assert connection is not None
        self._live, self._live_event = None, asyncio.Event()
        await connection.ws.close(code=code, message=b"Unknown error.")

    async def end_session(self) -> None:
        """End the live session for good, as Discord does after a long outage: op 9 "invalid
        session, not resumable". The client logs in again (IDENTIFY) and gets a new READY;
        nothing sent meanwhile is replayed."""
        await asyncio.wait_for(self._live_event.wait(), 5.0)
        connection = self._live
        assert connection is not None
        self._session = None
        self._live, self._live_event = None, asyncio.Event()
        await connection.ws.send_str(json.dumps({"op": 9, "d": False}))

    def describe(self, call: ApiCall) -> str:
        return f"{call.route}({call.status})"

    def calls_to(self, route: str) -> list[ApiCall]:
        """Calls by route template, e.g. "POST /channels/{channel_id}/messages"."""
        return [call for call in self.calls if call.route == route]

    def post_unseen(self, message: JSON) -> None:
        """A user's message kept in its channel's history without a dispatch: what a user
        sends while the bot is offline (dispatch() keeps each MESSAGE_CREATE here too)."""
        channel, author = int(message["channel_id"]), message["author"]
        self.history.setdefault(channel, []).append(message)
        self.users[int(author["id"])] = author
        if "guild_id" not in message:
            self.dm_recipients.setdefault(channel, int(author["id"]))

    def channel_messages(self, channel_id: int) -> list[JSON]:
        return [m for m in self.messages.values() if m["channel_id"] == str(channel_id)]

    def original_message(self, interaction_id: int) -> JSON | None:
        message_id = self._interactions[interaction_id].message_id
        return None if message_id is None else self.messages[message_id]

    def interaction_acknowledged(self, interaction_id: int) -> bool:
        return self._interactions[interaction_id].acknowledged

    # --- payload builders -------------------------------------------------------------------

    def message(
        self,
        *,
        channel_id: int,
        author: JSON,
        content: str = "",
        guild_id: int | None = None,
        mentions: list[JSON] | None = None,
        reply_to: JSON | None = None,
        attachments: list[JSON] | None = None,
        sticker_items: list[JSON] | None = None,
    ) -> JSON:
        """A MESSAGE_CREATE payload as a user would produce it."""
        data: JSON = {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions or [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if sticker_items:
            data["sticker_items"] = sticker_items
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        if reply_to is not None:
            data["type"] = 19
            data["message_reference"] = {
                "type": 0,
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                **({"guild_id": str(guild_id)} if guild_id is not None else {}),
            }
            data["referenced_message"] = reply_to
        return data

    def interaction(
        self,
        *,
        user: JSON,
        channel_id: int,
        data: JSON,
        type: int = 2,
        guild_id: int | None = None,
        message: JSON | None = None,
    ) -> JSON:
        """An INTERACTION_CREATE payload: type 2 = slash command, 3 = component press."""
        payload: JSON = {
            "id": str(self.snowflake()),
            "application_id": str(self.application_id),
            "type": type,
            "token": f"itoken-{next(self._ids)}",
            "version": 1,
            "data": data,
            "channel_id": str(channel_id),
            "channel": {"id": str(channel_id), "type": 1 if guild_id is None else 0},
            "locale": "en-US",
            "app_permissions": "0",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "attachment_size_limit": 10 * 1024 * 1024,
            "context": 1 if guild_id is None else 0,
        }
        if guild_id is None:
            payload["user"] = user
        else:
            payload["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["member"] = {
                "user": user,
                "roles": [],
                "joined_at": iso_now(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "0",
            }
        if message is not None:
            payload["message"] = message
        return payload

    # --- gateway ----------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connection = _Connection(ws, dict(request.query))
        self.connections.append(connection)
        await ws.send_str(
            json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        )
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                await self._gateway_op(connection, payload["op"], payload.get("d"))
        finally:
            if self._live is connection:
                self._live, self._live_event = None, asyncio.Event()
            connection.closed.set()
        return ws

    async def _gateway_op(self, connection: _Connection, op: int, data: Any) -> None:
        ws = connection.ws
        if op == 1:  # HEARTBEAT
            await ws.send_str(json.dumps({"op": 11}))
        elif op == 2:  # IDENTIFY
            self.identifies.append(data)
            if data.get("token") != self.token:
                await ws.close(code=4004, message=b"Authentication failed.")
            elif self.reject_intents:
                await ws.close(code=4014, message=b"Disallowed intent(s).")
            else:
                await self._ready(connection)
        elif op == 6:  # RESUME
            self.resumes.append(data)
            session = self._session
            if session is None or data.get("session_id") != session.id:
                await ws.send_str(json.dumps({"op": 9, "d": False}))
                return
            connection.session = session
            self._go_live(connection)
            session.seq += 1
            await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": session.seq, "d": {}}))

    async def _ready(self, connection: _Connection) -> None:
        session = _Session(id=f"session-{next(self._ids)}")
        self._session = connection.session = session
        ready = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": str(gid), "unavailable": True} for gid in self.guilds],
            "session_id": session.id,
            "resume_gateway_url": GATEWAY_URL,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "shard": [0, 1],
        }
        events = [("READY", ready)] + [("GUILD_CREATE", self._guild(gid)) for gid in self.guilds]
        for name, data in events:
            session.seq += 1
            await connection.ws.send_str(
                json.dumps({"op": 0, "t": name, "s": session.seq, "d": data})
            )
        self._go_live(connection)

    def _go_live(self, connection: _Connection) -> None:
        self._live = connection
        self._live_event.set()

    def _guild(self, guild_id: int) -> JSON:
        return {
            "id": str(guild_id),
            "name": f"guild-{guild_id}",
            "icon": None,
            "owner_id": "1",
            "unavailable": False,
            "member_count": 2,
            "large": False,
            "roles": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "members": [],
            "presences": [],
            "voice_states": [],
            "threads": [],
            "joined_at": iso_now(),
            "channels": [
                {
                    "id": str(cid),
                    "type": 0,
                    "name": f"channel-{cid}",
                    "position": index,
                    "guild_id": str(guild_id),
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                }
                for index, cid in enumerate(self.guilds[guild_id])
            ],
        }

    def _register_interaction(self, data: JSON) -> None:
        interaction = _Interaction(data, time.monotonic())
        if data.get("message"):
            # A component press: its @original is the message the button is on.
            interaction.message_id = int(data["message"]["id"])
        self._interactions[int(data["id"])] = interaction
        self._tokens[data["token"]] = int(data["id"])

    # --- REST plumbing ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> Any:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        resource = request.match_info.route.resource
        path = request.path.removeprefix(API_PREFIX)
        template = resource.canonical.removeprefix(API_PREFIX) if resource else path
        body, files = await _read_body(request)
        call = ApiCall(
            method=request.method,
            route=f"{request.method} {template}",
            path=path,
            params=dict(request.match_info),
            json=body,
            files=files,
            status=0,
            at=time.monotonic(),
        )
        self.calls.append(call)
        response = await self._answer(request, handler if resource else None, call)
        call.status = response.status
        return response

    async def _answer(
        self, request: web.Request, handler: Callable[..., Any] | None, call: ApiCall
    ) -> web.Response:
        if handler is None:
            return json_response({"message": "404: Not Found", "code": 0}, 404)
        # Interaction callbacks and webhooks authenticate by the token in the URL.
        by_url_token = call.route.startswith("POST /interactions/") or "/webhooks/" in call.route
        if not by_url_token and request.headers.get("Authorization") != f"Bot {self.token}":
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)
        fault = self.take_fault(call.route)
        if fault is not None:
            return _fault_response(fault)
        if self.hold is not None and self.hold(call):
            self.held.append(call)
            if self.hold_applied:
                await self._answer_call(request, handler, call)
            await self._released.wait()
            return json_response({"message": "the fake is closing", "code": 0}, 503)
        return await self._answer_call(request, handler, call)

    async def _answer_call(
        self, request: web.Request, handler: Callable[..., Any], call: ApiCall
    ) -> web.Response:
        try:
            # Route handlers take the recorded call (parsed body included) as a second argument.
            return await handler(request, call)
        except _ApiError as error:
            return json_response({"message": error.message, "code": error.code}, error.status)

    # --- REST handlers ----------------------------------------------------------------------

    async def _get_me(self, request: web.Request, call: ApiCall) -> web.Response:
        return json_response(self.bot)

    async def _get_application(self, request: web.Request, call: ApiCall) -> web.Response:
        return json_response(
            {
                "id": str(self.application_id),
                "name": "MoodBot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "00" * 32,
                "owner": user_payload(1, "owner"),
                "flags": 0,
                "bot": self.bot,
            }
        )

    async def _get_gateway(self, request: web.Request, call: ApiCall) -> web.Response:
        return json_response(
            {
                "url": GATEWAY_URL,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _put_commands(self, request: web.Request, call: ApiCall) -> web.Response:
        guild_id = call.params.get("guild_id")
        key = int(guild_id) if guild_id else None
        stored = [
            {
                "id": str(self.snowflake()),
                "application_id": str(self.application_id),
                "version": str(self.snowflake()),
                "type": 1,
                **({"guild_id": guild_id} if guild_id else {}),
                **command,
            }
            for command in call.json
        ]
        self.commands[key] = stored
        return json_response(stored)

    async def _create_dm(self, request: web.Request, call: ApiCall) -> web.Response:
        recipient = call.json["recipient_id"]
        channel_id = self.snowflake()
        self.dm_recipients[channel_id] = int(recipient)
        return json_response(
            {
                "id": str(channel_id),
                "type": 1,
                "recipients": [user_payload(int(recipient), f"user-{recipient}")],
                "last_message_id": None,
            }
        )

    async def _get_channel(self, request: web.Request, call: ApiCall) -> web.Response:
        channel_id = int(call.params["channel_id"])
        if channel_id in self.dm_recipients:
            user_id = self.dm_recipients[channel_id]
            user = self.users.get(user_id) or user_payload(user_id, f"user-{user_id}")
            return json_response({"id": str(channel_id), "type": 1, "recipients": [user],
                                  "last_message_id": None})  # fmt: skip
        for guild_id, channels in self.guilds.items():
            if channel_id in channels:
                return json_response({"id": str(channel_id), "type": 0, "guild_id": str(guild_id),
                                      "name": f"channel-{channel_id}", "position": 0,
                                      "permission_overwrites": [], "nsfw": False})  # fmt: skip
        raise _ApiError(404, 10003, "Unknown Channel")

    async def _get_messages(self, request: web.Request, call: ApiCall) -> web.Response:
        """Discord's history query, newest first: the `limit` messages right after `after`,
        or right before `before`, or the latest `limit` when neither is given."""
        channel_id = int(call.params["channel_id"])
        limit = int(request.query.get("limit", 50))
        mine = [m for m in self.messages.values() if m["channel_id"] == str(channel_id)]
        every = sorted([*self.history.get(channel_id, []), *mine], key=lambda m: int(m["id"]))
        if "after" in request.query:
            after = int(request.query["after"])
            return json_response([m for m in every if int(m["id"]) > after][:limit][::-1])
        if "before" in request.query:
            every = [m for m in every if int(m["id"]) < int(request.query["before"])]
        return json_response(every[-limit:][::-1])

    async def _typing(self, request: web.Request, call: ApiCall) -> web.Response:
        return web.Response(status=204)

    async def _create_message(self, request: web.Request, call: ApiCall) -> web.Response:
        if self.dm_recipients.get(int(call.params["channel_id"])) in self.closed_dms:
            raise _ApiError(403, 50007, "Cannot send messages to this user")
        body = call.json or {}
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            # Discord: a nonce seen in the last few minutes gets the message it created.
            for earlier in self.messages.values():
                if earlier.get("nonce") == str(nonce) and earlier["channel_id"] == str(
                    call.params["channel_id"]
                ):
                    return json_response(earlier)
        message = self._new_message(int(call.params["channel_id"]), body, call.files)
        if nonce is not None:
            message["nonce"] = str(nonce)
        return json_response(message)

    async def _edit_message(self, request: web.Request, call: ApiCall) -> web.Response:
        message = self._message(int(call.params["message_id"]))
        self._apply_edit(message, call.json or {}, call.files)
        return json_response(message)

    async def _delete_message(self, request: web.Request, call: ApiCall) -> web.Response:
        self._message(int(call.params["message_id"]))  # 404 when unknown
        del self.messages[int(call.params["message_id"])]
        return web.Response(status=204)

    async def _callback(self, request: web.Request, call: ApiCall) -> web.Response:
        interaction_id = int(call.params["interaction_id"])
        interaction = self._interactions.get(interaction_id)
        if interaction is None or interaction.payload["token"] != call.params["token"]:
            raise _ApiError(404, 10062, "Unknown interaction")
        if interaction.acknowledged:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - interaction.dispatched_at > INTERACTION_ACK_WINDOW_S:
            raise _ApiError(404, 10062, "Unknown interaction")
        interaction.acknowledged = True
        kind = call.json["type"]
        data = call.json.get("data") or {}
        channel_id = int(interaction.payload["channel_id"])
        message: JSON | None = None
        if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            flags = data.get("flags", 0) | (LOADING if kind == DEFERRED_CHANNEL_MESSAGE else 0)
            message = self._new_message(channel_id, {**data, "flags": flags}, call.files)
            message["interaction_metadata"] = {
                "id": str(interaction_id),
                "type": interaction.payload["type"],
                "user": interaction.payload.get("user") or interaction.payload["member"]["user"],
                "authorizing_integration_owners": {},
            }
            interaction.message_id = int(message["id"])
        elif kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            if interaction.message_id is None:
                raise _ApiError(400, 50035, "Invalid Form Body: no message to update")
            message = self._message(interaction.message_id)
            if kind == UPDATE_MESSAGE:
                self._apply_edit(message, data, call.files)
        answer: JSON = {
            "interaction": {
                "id": str(interaction_id),
                "type": interaction.payload["type"],
                "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(message and message["flags"] & EPHEMERAL),
            }
        }
        if message is not None:
            answer["interaction"]["response_message_id"] = message["id"]
            answer["resource"] = {"type": kind, "message": message}
        return json_response(answer)

    def _interaction_for(self, call: ApiCall) -> _Interaction:
        interaction_id = self._tokens.get(call.params["token"])
        if interaction_id is None or int(call.params["application_id"]) != self.application_id:
            raise _ApiError(404, 10015, "Unknown Webhook")
        interaction = self._interactions[interaction_id]
        if not interaction.acknowledged:
            raise _ApiError(404, 10008, "Unknown Message")  # nothing to edit yet
        return interaction

    async def _get_original(self, request: web.Request, call: ApiCall) -> web.Response:
        interaction = self._interaction_for(call)
        assert interaction.message_id is not None
        return json_response(self._message(interaction.message_id))

    async def _edit_original(self, request: web.Request, call: ApiCall) -> web.Response:
        interaction = self._interaction_for(call)
        if interaction.message_id is None:
            raise _ApiError(404, 10008, "Unknown Message")
        message = self._message(interaction.message_id)
        self._apply_edit(message, call.json or {}, call.files)
        message["flags"] &= ~LOADING
        return json_response(message)

    async def _followup(self, request: web.Request, call: ApiCall) -> web.Response:
        interaction = self._interaction_for(call)
        channel_id = int(interaction.payload["channel_id"])
        return json_response(self._new_message(channel_id, call.json or {}, call.files))

    async def _edit_followup(self, request: web.Request, call: ApiCall) -> web.Response:
        self._interaction_for(call)
        message = self._message(int(call.params["message_id"]))
        self._apply_edit(message, call.json or {}, call.files)
        return json_response(message)

    # --- message state ----------------------------------------------------------------------

    def _message(self, message_id: int) -> JSON:
        try:
            return self.messages[message_id]
        except KeyError:
            raise _ApiError(404, 10008, "Unknown Message") from None

    def _new_message(self, channel_id: int, body: JSON, files: list[UploadedFile]) -> JSON:
        content = body.get("content") or ""
        _check_content(content)
        empty = not content and not files and not body.get("components")
        if empty and not body.get("flags", 0) & LOADING:
            raise _ApiError(400, 50006, "Cannot send an empty message")
        message = self.message(channel_id=channel_id, author=self.bot, content=content)
        message["flags"] = body.get("flags", 0)
        message["components"] = body.get("components", [])
        message["attachments"] = self._attachments(body, files)
        if body.get("message_reference"):
            message["message_reference"] = body["message_reference"]
            message["type"] = 19
        message["allowed_mentions"] = body.get("allowed_mentions")  # for assertions only
        self.messages[int(message["id"])] = message
        return message

    def _apply_edit(self, message: JSON, body: JSON, files: list[UploadedFile]) -> None:
        if "content" in body:
            content = body["content"] or ""
            _check_content(content)
            message["content"] = content
        if "components" in body:
            message["components"] = body["components"] or []
        if "attachments" in body or files:
            message["attachments"] = self._attachments(body, files)
        if "allowed_mentions" in body:
            message["allowed_mentions"] = body["allowed_mentions"]
        message["edited_timestamp"] = iso_now()

    def _attachments(self, body: JSON, files: list[UploadedFile]) -> list[JSON]:
        stored = []
        for upload in files:
            attachment_id = self.snowflake()
            self.files[attachment_id] = upload.data
            stored.append(
                {
                    "id": str(attachment_id),
                    "filename": upload.filename,
                    "size": len(upload.data),
                    "content_type": upload.content_type,
                    "url": f"https://cdn.discordapp.com/attachments/{attachment_id}",
                    "proxy_url": f"https://cdn.discordapp.com/attachments/{attachment_id}",
                }
            )
        return stored


def _check_content(content: str) -> None:
    if len(content) > MAX_CONTENT:
        raise _ApiError(
            400, 50035, f"Invalid Form Body: content must be {MAX_CONTENT} or fewer in length."
        )


def _fault_response(fault: _Fault) -> web.Response:
    if fault.status == 403:  # what Discord says when the user's DMs are closed to the bot
        return json_response({"message": "Cannot send messages to this user", "code": 50007}, 403)
    if fault.status != 429:
        return json_response({"message": "scripted failure", "code": 0}, fault.status)
    headers = {
        "Retry-After": f"{fault.retry_after:g}",
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset-After": f"{fault.retry_after:g}",
        "X-RateLimit-Scope": "user",
    }
    if fault.via:
        headers["Via"] = "1.1 google"
    body = {"message": "You are being rate limited.", "retry_after": fault.retry_after}
    return json_response({**body, "global": False}, 429, headers)


async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    if request.content_type == "multipart/form-data":
        payload: Any = None
        files: list[UploadedFile] = []
        reader = await request.multipart()
        async for part in reader:
            assert isinstance(part, BodyPartReader)
            data = await part.read()
            name = part.name or ""
            if name == "payload_json":
                payload = json.loads(data)
            else:
                files.append(
                    UploadedFile(
                        field=name,
                        filename=part.filename or "",
                        content_type=part.headers.get("Content-Type", ""),
                        data=bytes(data),
                    )
                )
        return payload, files
    raw = await request.read()
    return (json.loads(raw) if raw else None), []
