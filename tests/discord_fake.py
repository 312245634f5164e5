"""A small but faithful fake of Discord (REST API v10 + the WebSocket gateway) on 127.0.0.1, so the real
discord.py client runs against it in tests.

The fake's aiohttp server runs in the test's own event loop::

    async with FakeDiscord() as fake:
        undo = fake.patch_discord()          # Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY -> the fake
        bot = commands.Bot(..., guild_ready_timeout=0.1)
        task = asyncio.create_task(bot.start(fake.token))
        ...
        await fake.send_user_message(fake.alice, "hello")
        reply = await fake.wait_for_message(lambda m: "hello" in m["content"])

The world: one guild with a text channel "general"; roles @everyone (ordinary text permissions, no Manage
Server), "admins" (adds Manage Server) and the bot's managed role; members: the bot (its application id is
its user id), "alice", "boss" (has "admins") and "owner" (owns the guild and the application).

What real Discord does and the fake copies (because code under test can get it wrong):
- message content is privileged: MESSAGE_CREATE/UPDATE carry an empty content (and no embeds, attachments,
  components) unless the client identified with the message_content intent, the bot is mentioned, or the
  bot wrote the message; identifying with that intent when the fake has allow_message_content=False closes
  the gateway with 4014;
- GUILD_CREATE lists every member only with the (privileged) members intent, else only the bot's own;
- the bot receives MESSAGE_CREATE for its own messages (not for ephemeral ones);
- a deferred (type 5) interaction response is a "thinking" message (flags LOADING); the first followup
  fills that message (same id) instead of posting a new one;
- mentions are computed from the content and the payload's allowed_mentions;
- limits: content <= 2000, embeds (<= 10, title 256, description 4096, 25 fields, 6000 in all),
  5 rows of 5 components, an empty message is refused (50006), a second interaction callback is refused
  (40060), a callback later than `interaction_timeout` seconds gets 10062 "Unknown interaction".
Forums (type 15) hold posts: `create_forum_post` makes the thread (its id is the starter message's id,
owned by the poster) and sends THREAD_CREATE (newly_created) then MESSAGE_CREATE, as Discord does; PATCH
of a thread changes its name, applied_tags (only the forum's tags, at most 5; by the owner or with Manage
Threads; a moderated tag needs Manage Threads) and archived/locked, and sends THREAD_UPDATE; users edit and
delete their messages (MESSAGE_UPDATE/DELETE) and moderators delete threads (THREAD_DELETE); role mentions
follow allowed_mentions (`mention_roles` in the record).
Not modelled: default_member_permissions is stored but does not hide commands from users, channel
permission overwrites, DMs, voice, sharding beyond [shard_id, shard_count] being accepted.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
import time
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions)
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = 8866461766385663  # discord.Permissions.all().value in discord.py 2.7.1

EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)
ADMINS_PERMISSIONS = EVERYONE_PERMISSIONS | MANAGE_GUILD | MANAGE_MESSAGES | MANAGE_THREADS | MENTION_EVERYONE
BOT_ROLE_PERMISSIONS = EVERYONE_PERMISSIONS

# Gateway intents
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15

# Message flags
FLAG_HAS_THREAD = 1 << 5
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
_INTERNAL_KEYS = ("payload", "deleted")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # body= (not text=) so that the Content-Type is exactly "application/json": discord.py only decodes
    # JSON when the header equals that string, and text= would append "; charset=utf-8".
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json", headers=headers
    )


def _error(status: int, code: int, message: str, errors: dict | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return _json_response(body, status)


def _invalid_form(errors: dict) -> web.Response:
    return _error(400, 50035, "Invalid Form Body", errors)


def _field_error(code: str, message: str) -> dict:
    return {"_errors": [{"code": code, "message": message}]}


def _public(message: dict) -> dict:
    """The Discord message object without the fake's bookkeeping keys."""
    out = {k: copy.deepcopy(v) for k, v in message.items() if k not in _INTERNAL_KEYS}
    return out


class PatchHandle:
    """Returned by FakeDiscord.patch_discord(): call it, or leave the `with`/`async with` block, to undo."""

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo: Callable[[], None] | None = undo

    def __call__(self) -> None:
        if self._undo is not None:
            undo, self._undo = self._undo, None
            undo()

    def __enter__(self) -> PatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self()

    async def __aenter__(self) -> PatchHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self()


@dataclass
class Interaction:
    """An interaction the fake created (a user ran a command or clicked a component)."""

    id: str
    token: str
    type: int  # 2 application command, 3 message component
    user: dict
    channel_id: str
    payload: dict  # the INTERACTION_CREATE data as dispatched
    created: float  # time.monotonic()
    responses: list[dict] = field(default_factory=list)  # callback bodies: {"type": ..., "data": {...}}
    followups: list[dict] = field(default_factory=list)  # message records (live, edits update them)
    original: dict | None = None  # the response message record (type 4, 5 or 7), live

    @property
    def response_type(self) -> int | None:
        return self.responses[0]["type"] if self.responses else None


@dataclass
class _RateLimitRule:
    method: str
    pattern: re.Pattern[str]
    retry_after: float
    times: int
    is_global: bool


class _Session:
    def __init__(self, session_id: str, intents: int, identify: dict) -> None:
        self.id = session_id
        self.intents = intents
        self.identify = identify
        self.events: list[str] = []  # encoded dispatch frames; events[i] has s == i + 1
        self.conn: _Conn | None = None


class _Conn:
    def __init__(self, ws: web.WebSocketResponse, *, zlib_stream: bool) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()
        self.session: _Session | None = None
        self.sent = 0  # how many of session.events went out on this connection
        self.server_closed = False
        self._compressor = zlib.compressobj() if zlib_stream else None

    async def send_text(self, text: str) -> bool:
        """Send one frame (call with self.lock held); False when the socket is gone."""
        if self.ws.closed:
            return False
        try:
            if self._compressor is not None:
                data = self._compressor.compress(text.encode()) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def send(self, frame: dict) -> bool:
        async with self.lock:
            return await self.send_text(json.dumps(frame))


@dataclass
class _Call:
    request: web.Request
    method: str
    path: str  # relative to /api/v10
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: list[dict]


Handler = Callable[[_Call], Coroutine[Any, Any, web.StreamResponse]]


class FakeDiscord:
    def __init__(
        self,
        *,
        token: str = "test-token",
        allow_message_content: bool = True,
        heartbeat_interval: float = 41250.0,
        interaction_timeout: float = 3.0,
        dispatch_grace: float = 0.02,
    ) -> None:
        self.token = token
        self.allow_message_content = allow_message_content
        self.heartbeat_interval = heartbeat_interval
        self.interaction_timeout = interaction_timeout
        # After a gateway event that a REST reply depends on (THREAD_CREATE before the thread's reply),
        # wait this long so the client has processed the event before it reads the reply.
        self.dispatch_grace = dispatch_grace
        self.port = 0
        self._last_id = 0
        self._runner: web.AppRunner | None = None
        self._joined_at = _now_iso()

        # -- the world --
        self.guild_id = self._next_id()
        self.bot_user = self._make_user("ragbot", bot=True)
        self.application_id = self.bot_user["id"]
        self.owner = self._make_user("owner")
        self.alice = self._make_user("alice")
        self.boss = self._make_user("boss")
        self.users: dict[str, dict] = {u["id"]: u for u in (self.bot_user, self.owner, self.alice, self.boss)}
        self.admin_role_id = self._next_id()
        self.bot_role_id = self._next_id()
        self.roles: dict[str, dict] = {
            self.guild_id: self._make_role(self.guild_id, "@everyone", EVERYONE_PERMISSIONS, 0),
            self.bot_role_id: self._make_role(
                self.bot_role_id,
                self.bot_user["username"],
                BOT_ROLE_PERMISSIONS,
                1,
                bot_id=self.bot_user["id"],
            ),
            self.admin_role_id: self._make_role(self.admin_role_id, "admins", ADMINS_PERMISSIONS, 2),
        }
        self.members: dict[str, dict] = {
            self.bot_user["id"]: self._make_member(self.bot_user, [self.bot_role_id]),
            self.owner["id"]: self._make_member(self.owner, []),
            self.alice["id"]: self._make_member(self.alice, []),
            self.boss["id"]: self._make_member(self.boss, [self.admin_role_id]),
        }
        self.channels: dict[str, dict] = {}
        self.channel_id = self._make_text_channel("general")
        self.threads: dict[str, dict] = {}  # thread id -> channel object

        # -- what happened --
        self.messages: list[dict] = []  # every message the bot created (live records)
        self.edits: list[dict] = []  # {message_id, payload, at}
        self.deletions: list[dict] = []  # {message_id, at}
        self.thread_edits: list[dict] = []  # the bot's PATCHes of threads: {thread_id, payload}
        self.requests: list[dict] = []  # every REST call
        self.unhandled: list[dict] = []  # REST calls the fake has no route for (answered 404/405)
        self.global_commands: dict[str, dict] = {}
        self.guild_commands: dict[str, dict] = {}
        self.commands: dict[str, dict] = {}  # registered application commands by name (guild ones win)
        self.interactions: dict[str, Interaction] = {}
        self.gateway_connections: list[dict] = []  # {path, query, at}
        self.identify_payloads: list[dict] = []
        self.presence_updates: list[dict] = []
        self.files: dict[str, bytes] = {}  # attachment id -> the uploaded bytes
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0

        self._all_messages: dict[str, dict] = {}  # users' and the bot's, by id
        self._by_token: dict[str, Interaction] = {}
        self._sessions: dict[str, _Session] = {}
        self._conns: list[_Conn] = []
        self._rate_limits: list[_RateLimitRule] = []
        self._tasks: set[asyncio.Task] = set()
        self._routes = self._build_routes()

    # ---------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("GET", "/gateway", self._gateway)
        app.router.add_route("GET", "/resume-gateway", self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._http)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for conn in list(self._conns):
            await self._close_conn(conn, 1001, "fake Discord shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/resume-gateway"

    def patch_discord(self) -> PatchHandle:
        """Point discord.py at the fake; returns a callable (also a context manager) that undoes it."""
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

        def undo() -> None:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

        return PatchHandle(undo)

    # ---------------------------------------------------------------------------------------- the world

    def _next_id(self) -> str:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(now, self._last_id + 1)
        return str(self._last_id)

    def _make_user(self, name: str, *, bot: bool = False) -> dict:
        user = {
            "id": self._next_id(),
            "username": name,
            "discriminator": "4242" if bot else "0",
            "global_name": None if bot else name.title(),
            "avatar": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        return user

    @staticmethod
    def _make_role(role_id: str, name: str, permissions: int, position: int, *, bot_id: str = "") -> dict:
        role = {
            "id": role_id,
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": bool(bot_id),
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if bot_id:
            role["tags"] = {"bot_id": bot_id}
        return role

    def _make_member(self, user: dict, roles: list[str]) -> dict:
        return {
            "user": user,
            "roles": roles,
            "nick": None,
            "avatar": None,
            "banner": None,
            "joined_at": self._joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }

    def _make_text_channel(self, name: str) -> str:
        channel_id = self._next_id()
        self.channels[channel_id] = {
            "id": channel_id,
            "type": 0,
            "guild_id": self.guild_id,
            "name": name,
            "position": len(self.channels),
            "permission_overwrites": [],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "default_auto_archive_duration": 1440,
            "default_thread_rate_limit_per_user": 0,
            "flags": 0,
        }
        return channel_id

    def add_channel(self, name: str) -> str:
        """Another text channel in the guild; dispatches CHANNEL_CREATE. Returns its id."""
        channel_id = self._make_text_channel(name)
        self._dispatch_soon("CHANNEL_CREATE", self.channels[channel_id], intent=INTENT_GUILDS)
        return channel_id

    def add_forum(self, name: str, tags: list[str] | tuple[str, ...] = ()) -> str:
        """A forum channel (type 15) with these tags (`available_tags`); dispatches CHANNEL_CREATE."""
        channel_id = self._make_text_channel(name)
        forum = self.channels[channel_id]
        forum.update(
            type=15,
            available_tags=[
                {"id": self._next_id(), "name": tag, "moderated": False, "emoji_id": None, "emoji_name": None}
                for tag in tags
            ],
            default_reaction_emoji=None,
            default_sort_order=None,
            default_forum_layout=0,
        )
        self._dispatch_soon("CHANNEL_CREATE", forum, intent=INTENT_GUILDS)
        return channel_id

    def tag_id(self, forum_id: str, name: str) -> str:
        """The id of the forum's tag called `name`."""
        return next(t["id"] for t in self.channels[forum_id]["available_tags"] if t["name"] == name)

    def add_role(self, name: str, permissions: int = 0) -> str:
        """A new guild role (GUILD_ROLE_CREATE); returns its id."""
        role_id = self._next_id()
        self.roles[role_id] = self._make_role(role_id, name, permissions, len(self.roles))
        self._dispatch_soon(
            "GUILD_ROLE_CREATE",
            {"guild_id": self.guild_id, "role": self.roles[role_id]},
            intent=INTENT_GUILDS,
        )
        return role_id

    def add_member(self, name: str, roles: list[str] | tuple[str, ...] = ()) -> dict:
        """A new member (a user) with these role ids; returns the user."""
        user = self._make_user(name)
        self.users[user["id"]] = user
        self.members[user["id"]] = self._make_member(user, list(roles))
        return user

    def grant_bot(self, permissions: int) -> None:
        """Add permissions to the bot's managed role (GUILD_ROLE_UPDATE)."""
        role = self.roles[self.bot_role_id]
        role["permissions"] = str(int(role["permissions"]) | permissions)
        self._dispatch_soon(
            "GUILD_ROLE_UPDATE", {"guild_id": self.guild_id, "role": role}, intent=INTENT_GUILDS
        )

    def _channel(self, channel_id: str) -> dict | None:
        return self.channels.get(channel_id) or self.threads.get(channel_id)

    def _member(self, user_id: str, *, with_user: bool = False) -> dict | None:
        member = self.members.get(user_id)
        if member is None:
            return None
        out = copy.deepcopy(member)
        if not with_user:
            out.pop("user")
        return out

    def permissions_of(self, user_id: str) -> int:
        """The member's computed guild permissions (no channel overwrites exist in the fake)."""
        if user_id == self.owner["id"]:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        if member is None:
            return 0
        value = int(self.roles[self.guild_id]["permissions"])
        for role_id in member["roles"]:
            value |= int(self.roles[role_id]["permissions"])
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def _me(self) -> dict:
        return {**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0, "email": None, "bio": ""}

    def _application(self) -> dict:
        flags = (1 << 13) | (1 << 15) | ((1 << 19) if self.allow_message_content else 0)
        return {
            "id": self.application_id,
            "name": self.bot_user["username"],
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.owner,
            "team": None,
            "flags": flags,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "integration_types_config": {"0": {}},
            "approximate_guild_count": 1,
            "bot": self.bot_user,
        }

    def _guild(self) -> dict:
        return {
            "id": self.guild_id,
            "name": "Fake Guild",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": self.owner["id"],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": list(copy.deepcopy(self.roles).values()),
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": self.channel_id,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }

    def _guild_create(self, session: _Session) -> dict:
        if session.intents & INTENT_GUILD_MEMBERS:
            members = [copy.deepcopy(m) for m in self.members.values()]
        else:  # without the members intent Discord only sends the bot's own member
            members = [copy.deepcopy(self.members[self.bot_user["id"]])]
        channels = []
        for channel in self.channels.values():
            entry = copy.deepcopy(channel)
            entry.pop("guild_id", None)
            channels.append(entry)
        threads = [copy.deepcopy(t) for t in self.threads.values() if not t["thread_metadata"]["archived"]]
        return {
            **self._guild(),
            "joined_at": self._joined_at,
            "large": False,
            "unavailable": False,
            "member_count": len(self.members),
            "voice_states": [],
            "members": members,
            "channels": channels,
            "threads": threads,
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "lazy": True,
        }

    # --------------------------------------------------------------------------------------- messages

    def _mentions(self, content: str, allowed: dict | None, *, author_id: str, replied_to: dict | None):
        """(mentions, mention_roles, mention_everyone) as Discord derives them from the content."""
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or [])
        allowed_users = set(map(str, (allowed or {}).get("users") or []))
        allowed_roles = set(map(str, (allowed or {}).get("roles") or []))
        user_ids: list[str] = []
        for uid in re.findall(r"<@!?(\d+)>", content):
            if uid in self.users and uid not in user_ids and ("users" in parse or uid in allowed_users):
                user_ids.append(uid)
        if replied_to is not None:
            replied_user = True if allowed is None else bool(allowed.get("replied_user", False))
            rid = replied_to["author"]["id"]
            if replied_user and rid != author_id and rid not in user_ids:
                user_ids.append(rid)
        mentions = []
        for uid in user_ids:
            entry = copy.deepcopy(self.users[uid])
            member = self._member(uid)
            if member is not None:
                entry["member"] = member
            mentions.append(entry)
        roles = []
        for rid in re.findall(r"<@&(\d+)>", content):
            if rid in self.roles and rid not in roles and ("roles" in parse or rid in allowed_roles):
                roles.append(rid)
        everyone = (
            ("@everyone" in content or "@here" in content)
            and "everyone" in parse
            and bool(self.permissions_of(author_id) & MENTION_EVERYONE)
        )
        return mentions, roles, everyone

    def _new_message(
        self,
        *,
        channel_id: str,
        author: dict,
        payload: dict,
        attachments: list[dict] | None = None,
        msg_type: int | None = None,
        extra: dict | None = None,
    ) -> dict:
        content = payload.get("content") or ""
        reference = payload.get("message_reference")
        replied_to = None
        if reference and reference.get("type", 0) == 0 and reference.get("message_id"):
            replied_to = self._all_messages.get(str(reference["message_id"]))
        mentions, roles, everyone = self._mentions(
            content, payload.get("allowed_mentions"), author_id=author["id"], replied_to=replied_to
        )
        message: dict[str, Any] = {
            "id": self._next_id(),
            "channel_id": channel_id,
            "guild_id": self.guild_id,
            "type": msg_type if msg_type is not None else (19 if replied_to is not None else 0),
            "content": content,
            "author": copy.deepcopy(author),
            "mentions": mentions,
            "mention_roles": roles,
            "mention_everyone": everyone,
            "mention_channels": [],
            "attachments": attachments or [],
            "embeds": [self._normalise_embed(e) for e in payload.get("embeds") or []],
            "components": copy.deepcopy(payload.get("components") or []),
            "pinned": False,
            "tts": bool(payload.get("tts", False)),
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "flags": int(payload.get("flags") or 0),
        }
        if payload.get("nonce") is not None:
            message["nonce"] = payload["nonce"]
        if replied_to is not None:
            message["message_reference"] = {
                "type": 0,
                "message_id": replied_to["id"],
                "channel_id": replied_to["channel_id"],
                "guild_id": self.guild_id,
            }
            referenced = _public(replied_to)
            referenced.pop("referenced_message", None)
            message["referenced_message"] = referenced
        if extra:
            message.update(extra)
        self._all_messages[message["id"]] = message
        for container in (self.channels.get(channel_id), self.threads.get(channel_id)):
            if container is not None:
                container["last_message_id"] = message["id"]
        thread = self.threads.get(channel_id)
        if thread is not None:
            thread["message_count"] += 1
            thread["total_message_sent"] += 1
        return message

    @staticmethod
    def _normalise_embed(embed: dict) -> dict:
        out = copy.deepcopy(embed)
        out.setdefault("type", "rich")
        out.setdefault("content_scan_version", 0)
        return out

    def _record_bot_message(self, message: dict, payload: dict) -> None:
        message["payload"] = copy.deepcopy(payload)
        self.messages.append(message)

    def _content_visible(self, session: _Session, message: dict) -> bool:
        if session.intents & INTENT_MESSAGE_CONTENT:
            return True
        bot_id = self.bot_user["id"]
        return message["author"]["id"] == bot_id or any(m["id"] == bot_id for m in message["mentions"])

    def _message_event(self, message: dict) -> Callable[[_Session], dict]:
        data = _public(message)
        member = self._member(message["author"]["id"])
        if member is not None and "webhook_id" not in message:
            data["member"] = member

        def for_session(session: _Session) -> dict:
            if self._content_visible(session, message):
                return data
            blank = dict(data, content="", embeds=[], attachments=[], components=[])
            blank.pop("poll", None)
            return blank

        return for_session

    async def _dispatch_message(self, event: str, message: dict) -> None:
        if message["flags"] & FLAG_EPHEMERAL:
            return  # ephemeral messages never reach the gateway
        await self._dispatch(event, self._message_event(message), intent=INTENT_GUILD_MESSAGES)

    def _validate(self, message: dict) -> web.Response | None:
        """Discord's limits on a message that is about to be created or to become the result of an edit."""
        errors: dict[str, Any] = {}
        content = message.get("content") or ""
        if len(content) > 2000:
            errors["content"] = _field_error("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = message.get("embeds") or []
        if len(embeds) > 10:
            errors["embeds"] = _field_error("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        total = 0
        limits = {"title": 256, "description": 4096}
        for index, embed in enumerate(embeds):
            embed_errors: dict[str, Any] = {}
            for key, limit in limits.items():
                value = embed.get(key) or ""
                total += len(value)
                if len(value) > limit:
                    embed_errors[key] = _field_error(
                        "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                    )
            fields = embed.get("fields") or []
            if len(fields) > 25:
                embed_errors["fields"] = _field_error(
                    "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            for field_index, embed_field in enumerate(fields):
                for key, limit in (("name", 256), ("value", 1024)):
                    value = embed_field.get(key) or ""
                    total += len(value)
                    if len(value) > limit:
                        embed_errors.setdefault("fields", {}).setdefault(str(field_index), {})[key] = (
                            _field_error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
                        )
            for key, inner, limit in (("footer", "text", 2048), ("author", "name", 256)):
                value = (embed.get(key) or {}).get(inner) or ""
                total += len(value)
                if len(value) > limit:
                    embed_errors[key] = {
                        inner: _field_error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
                    }
            if embed_errors:
                errors.setdefault("embeds", {})[str(index)] = embed_errors
        if total > 6000:
            errors.setdefault("embeds", {}).update(
                _field_error("MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
            )
        components = message.get("components") or []
        is_v2 = int(message.get("flags") or 0) & (1 << 15)
        if not is_v2:
            if len(components) > 5:
                errors["components"] = _field_error("BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
            for index, row in enumerate(components):
                children = row.get("components") or []
                if len(children) > 5:
                    errors.setdefault("components", {})[str(index)] = {
                        "components": _field_error("BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
                    }
                for child_index, child in enumerate(children):
                    for key, limit in (("custom_id", 100), ("label", 80)):
                        if len(child.get(key) or "") > limit:
                            errors.setdefault("components", {}).setdefault(str(index), {}).setdefault(
                                "components", {}
                            ).setdefault(str(child_index), {})[key] = _field_error(
                                "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                            )
        if errors:
            return _invalid_form(errors)
        if not (
            content
            or embeds
            or components
            or message.get("attachments")
            or message.get("sticker_ids")
            or message.get("poll")
        ):
            return _error(400, 50006, "Cannot send an empty message")
        return None

    def _attachments(self, channel_id: str, payload: dict, files: list[dict], keep: list[dict]) -> list[dict]:
        out = list(keep)
        described = {str(a.get("id")): a for a in payload.get("attachments") or [] if isinstance(a, dict)}
        for index, upload in enumerate(files):
            key = upload["field"]
            match = re.fullmatch(r"files\[(\d+)\]", key)
            meta = described.get(match.group(1) if match else str(index), {})
            attachment_id = self._next_id()
            filename = meta.get("filename") or upload["filename"] or f"file{index}"
            url = f"http://127.0.0.1:{self.port}/attachments/{channel_id}/{attachment_id}/{filename}"
            attachment = {
                "id": attachment_id,
                "filename": filename,
                "size": len(upload["data"]),
                "url": url,
                "proxy_url": url,
                "content_type": upload["content_type"],
            }
            if meta.get("description"):
                attachment["description"] = meta["description"]
            self.files[attachment_id] = upload["data"]
            out.append(attachment)
        return out

    def _apply_edit(self, message: dict, payload: dict, files: list[dict]) -> web.Response | None:
        """Apply a PATCH payload to a message record (validating the result); None when it worked."""
        updated = dict(message)
        if "content" in payload:
            updated["content"] = payload["content"] or ""
        if "embeds" in payload:
            updated["embeds"] = [self._normalise_embed(e) for e in payload["embeds"] or []]
        if "components" in payload:
            updated["components"] = copy.deepcopy(payload["components"] or [])
        if "flags" in payload and payload["flags"] is not None:
            keep = message["flags"] & (FLAG_EPHEMERAL | FLAG_HAS_THREAD)
            updated["flags"] = keep | (int(payload["flags"]) & ~(FLAG_LOADING | FLAG_EPHEMERAL))
        updated["flags"] &= ~FLAG_LOADING  # any edit fills a deferred response's "thinking" message
        if "attachments" in payload or files:
            wanted = {str(a.get("id")) for a in payload.get("attachments") or [] if isinstance(a, dict)}
            keep_existing = [a for a in message["attachments"] if a["id"] in wanted]
            updated["attachments"] = self._attachments(message["channel_id"], payload, files, keep_existing)
        problem = self._validate(updated)
        if problem is not None:
            return problem
        if "content" in payload or "allowed_mentions" in payload:
            mentions, roles, everyone = self._mentions(
                updated["content"],
                payload.get("allowed_mentions"),
                author_id=message["author"]["id"],
                replied_to=None,
            )
            updated.update(mentions=mentions, mention_roles=roles, mention_everyone=everyone)
        updated["edited_timestamp"] = _now_iso()
        message.update(updated)
        return None

    async def _edit(self, message: dict, payload: dict, files: list[dict]) -> web.Response | None:
        problem = self._apply_edit(message, payload, files)
        if problem is not None:
            return problem
        self.edits.append(
            {"message_id": message["id"], "payload": copy.deepcopy(payload), "at": time.monotonic()}
        )
        await self._dispatch_message("MESSAGE_UPDATE", message)
        return None

    async def _delete(self, message: dict) -> None:
        message["deleted"] = True
        self._all_messages.pop(message["id"], None)
        self.deletions.append({"message_id": message["id"], "at": time.monotonic()})
        if not message["flags"] & FLAG_EPHEMERAL:
            data = {"id": message["id"], "channel_id": message["channel_id"], "guild_id": self.guild_id}
            await self._dispatch("MESSAGE_DELETE", data, intent=INTENT_GUILD_MESSAGES)

    # ------------------------------------------------------------------------------------ acting as users

    async def send_user_message(
        self,
        author: dict,
        content: str,
        *,
        channel_id: str | None = None,
        mention_bot: bool = False,
        reply_to: dict | None = None,
    ) -> dict:
        """`author` posts `content` (MESSAGE_CREATE). mention_bot=True puts "<@BOTID> " in front unless the
        content already mentions the bot. Returns the full message (not added to `messages`)."""
        channel_id = str(channel_id or self.channel_id)
        if self._channel(channel_id) is None:
            raise ValueError(f"unknown channel {channel_id}")
        bot_id = self.bot_user["id"]
        if mention_bot and not re.search(rf"<@!?{bot_id}>", content):
            content = f"<@{bot_id}> {content}"
        payload: dict[str, Any] = {"content": content}
        if reply_to is not None:
            payload["message_reference"] = {
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
            }
        message = self._new_message(channel_id=channel_id, author=self.users[author["id"]], payload=payload)
        await self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def create_forum_post(
        self, author: dict, forum_id: str, title: str, content: str, *, tags: list[str] | tuple[str, ...] = ()
    ) -> tuple[dict, dict]:
        """`author` opens a post in the forum: THREAD_CREATE (newly_created, the thread's id is the starter
        message's), then the starter message's MESSAGE_CREATE. Returns (thread, starter message)."""
        forum = self.channels.get(str(forum_id))
        if forum is None or forum["type"] != 15:
            raise ValueError(f"{forum_id} is not a forum channel")
        known = {t["id"] for t in forum["available_tags"]}
        if not set(tags) <= known:
            raise ValueError(f"unknown tags {sorted(set(tags) - known)}")
        thread_id = self._next_id()
        result = self._new_thread(thread_id, forum["id"], {"name": title, "auto_archive_duration": 4320}, 11)
        if isinstance(result, web.Response):
            raise ValueError(f"bad post title {title!r}")
        result.update(owner_id=author["id"], applied_tags=list(tags))
        event = {**copy.deepcopy(result), "newly_created": True}
        await self._dispatch("THREAD_CREATE", event, intent=INTENT_GUILDS)
        payload = {"content": content}
        message = self._new_message(channel_id=thread_id, author=self.users[author["id"]], payload=payload)
        # (a post's starter message has the thread's id)
        del self._all_messages[message["id"]]
        message["id"] = thread_id
        self._all_messages[thread_id] = message
        result["last_message_id"] = thread_id
        forum["last_message_id"] = thread_id
        await self._dispatch_message("MESSAGE_CREATE", message)
        return result, message

    async def edit_user_message(self, author: dict, message: dict, content: str) -> dict:
        """`author` edits their own message (MESSAGE_UPDATE)."""
        current = self._all_messages.get(message["id"])
        if current is None or current["author"]["id"] != author["id"]:
            raise ValueError(f"{author['username']} cannot edit message {message['id']}")
        problem = await self._edit(current, {"content": content}, [])
        if problem is not None:
            raise ValueError(f"edit refused: {problem.text}")
        return current

    async def delete_user_message(self, user: dict, message: dict) -> None:
        """`user` deletes a message: their own, or any with Manage Messages (MESSAGE_DELETE)."""
        current = self._all_messages.get(message["id"])
        if current is None:
            raise ValueError(f"unknown message {message['id']}")
        if current["author"]["id"] != user["id"] and not self.permissions_of(user["id"]) & MANAGE_MESSAGES:
            raise ValueError(f"{user['username']} may not delete message {message['id']}")
        await self._delete(current)

    async def set_thread_tags(self, user: dict, thread_id: str, tags: list[str] | tuple[str, ...]) -> dict:
        """`user` sets the post's tags in Discord's client (THREAD_UPDATE), with Discord's checks."""
        thread = self.threads.get(str(thread_id))
        if thread is None:
            raise ValueError(f"unknown thread {thread_id}")
        problem = await self._update_thread(thread, {"applied_tags": list(tags)}, user["id"])
        if problem is not None:
            raise ValueError(f"tag change refused: {problem.text}")
        return thread

    async def rename_thread(self, user: dict, thread_id: str, name: str) -> dict:
        """`user` (the owner, or with Manage Threads) renames the thread (THREAD_UPDATE)."""
        thread = self.threads.get(str(thread_id))
        if thread is None:
            raise ValueError(f"unknown thread {thread_id}")
        problem = await self._update_thread(thread, {"name": name}, user["id"])
        if problem is not None:
            raise ValueError(f"rename refused: {problem.text}")
        return thread

    async def delete_thread(self, user: dict, thread_id: str) -> None:
        """`user` (Manage Threads or the post's owner) deletes the thread and its messages (THREAD_DELETE)."""
        thread = self.threads.get(str(thread_id))
        if thread is None:
            raise ValueError(f"unknown thread {thread_id}")
        if thread["owner_id"] != user["id"] and not self.permissions_of(user["id"]) & MANAGE_THREADS:
            raise ValueError(f"{user['username']} may not delete thread {thread_id}")
        del self.threads[thread["id"]]
        for message_id in [i for i, m in self._all_messages.items() if m["channel_id"] == thread["id"]]:
            self._all_messages.pop(message_id)["deleted"] = True
        data = {
            "id": thread["id"],
            "guild_id": self.guild_id,
            "parent_id": thread["parent_id"],
            "type": thread["type"],
        }
        await self._dispatch("THREAD_DELETE", data, intent=INTENT_GUILDS)

    async def invoke_command(
        self,
        user: dict,
        name: str,
        options: dict | None = None,
        *,
        channel_id: str | None = None,
        subcommand: str | None = None,
    ) -> Interaction:
        """`user` runs /name (INTERACTION_CREATE type 2). Option types come from the synced command when
        there is one (else: str 3, bool 5, int 4, float 10, user dict 6). `subcommand` may be "sub" or
        "group sub"."""
        command = self.guild_commands.get(name)
        guild_scoped = command is not None
        if command is None:
            command = self.global_commands.get(name)
        schema: list[dict] | None = command.get("options") or [] if command else None
        resolved: dict[str, dict] = {}
        path = subcommand.split() if subcommand else []
        if schema is not None:
            schema = self._leaf_options(schema, path, name)
        built = self._build_options(schema, dict(options or {}), resolved, name)
        for depth, part in reversed(list(enumerate(path))):
            kind = 1 if depth == len(path) - 1 else 2
            built = [{"name": part, "type": kind, "options": built}]
        data: dict[str, Any] = {"id": command["id"] if command else self._next_id(), "name": name, "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if guild_scoped:
            data["guild_id"] = self.guild_id
        return await self._create_interaction(user, 2, data, str(channel_id or self.channel_id))

    async def autocomplete(
        self,
        user: dict,
        name: str,
        options: dict,
        *,
        focused: str,
        subcommand: str | None = None,
        channel_id: str | None = None,
    ) -> Interaction:
        """`user` is typing option `focused` of /name (INTERACTION_CREATE type 4, partial values as typed,
        no required-option checks); the bot's choices arrive as a type 8 callback in `responses`."""
        command = self.guild_commands.get(name) or self.global_commands.get(name)
        if command is None:
            raise ValueError(f"/{name} is not registered")
        path = subcommand.split() if subcommand else []
        by_name = {o["name"]: o for o in self._leaf_options(command.get("options") or [], path, name)}
        if focused not in options or not by_name.get(focused, {}).get("autocomplete"):
            raise ValueError(f"/{name} option {focused!r} is not given or has no autocomplete")
        built: list[dict] = []
        for key, value in options.items():
            entry = {"name": key, "type": by_name[key]["type"], "value": value}
            if key == focused:
                entry["focused"] = True
            built.append(entry)
        for depth, part in reversed(list(enumerate(path))):
            built = [{"name": part, "type": 1 if depth == len(path) - 1 else 2, "options": built}]
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1, "options": built}
        if name in self.guild_commands:
            data["guild_id"] = self.guild_id
        return await self._create_interaction(user, 4, data, str(channel_id or self.channel_id))

    @staticmethod
    def _leaf_options(schema: list[dict], path: list[str], name: str) -> list[dict]:
        options = schema
        for part in path:
            match = next((o for o in options if o["name"] == part and o.get("type") in (1, 2)), None)
            if match is None:
                raise ValueError(f"/{name} has no subcommand (group) {part!r}")
            options = match.get("options") or []
        if any(o.get("type") in (1, 2) for o in options):
            raise ValueError(f"/{name} {' '.join(path)}: pick a subcommand")
        return options

    def _build_options(
        self, schema: list[dict] | None, values: dict, resolved: dict, name: str
    ) -> list[dict]:
        by_name = {o["name"]: o for o in schema or []}
        if schema is not None:
            unknown = set(values) - set(by_name)
            if unknown:
                raise ValueError(f"/{name} has no option(s) {sorted(unknown)}")
            missing = [o["name"] for o in by_name.values() if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"/{name} needs option(s) {missing}")
        built = []
        for key, value in values.items():
            kind = by_name[key]["type"] if key in by_name else self._infer_option_type(value)
            if key in by_name:
                self._check_option_value(name, by_name[key], value)
            if kind == 6:
                user_id = value["id"] if isinstance(value, dict) else str(value)
                resolved.setdefault("users", {})[user_id] = copy.deepcopy(self.users[user_id])
                member = self._member(user_id)
                if member is not None:
                    member["permissions"] = str(self.permissions_of(user_id))
                    resolved.setdefault("members", {})[user_id] = member
                value = user_id
            elif kind == 7:
                channel_id = value["id"] if isinstance(value, dict) else str(value)
                channel = self._channel(channel_id)
                if channel is not None:
                    entry = copy.deepcopy(channel)
                    entry["permissions"] = str(self.permissions_of(self.bot_user["id"]))
                    resolved.setdefault("channels", {})[channel_id] = entry
                value = channel_id
            elif kind == 8:
                role_id = value["id"] if isinstance(value, dict) else str(value)
                resolved.setdefault("roles", {})[role_id] = copy.deepcopy(self.roles[role_id])
                value = role_id
            elif kind == 4:
                value = int(value)
            elif kind == 10:
                value = float(value)
            built.append({"name": key, "type": kind, "value": value})
        return built

    @staticmethod
    def _check_option_value(command: str, option: dict, value: Any) -> None:
        """What Discord's client enforces before it sends an interaction."""
        problem = None
        choices = [c["value"] for c in option.get("choices") or []]
        if choices and value not in choices:
            problem = f"must be one of {choices}"
        elif option["type"] == 3 and isinstance(value, str):
            if len(value) < option.get("min_length", 0) or len(value) > option.get("max_length", 6000):
                problem = f"length must be {option.get('min_length', 0)}..{option.get('max_length', 6000)}"
        elif option["type"] in (4, 10) and isinstance(value, int | float):
            low, high = option.get("min_value"), option.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                problem = f"must be within {low}..{high}"
        if problem:
            raise ValueError(f"/{command} option {option['name']!r}={value!r}: {problem}")

    @staticmethod
    def _infer_option_type(value: Any) -> int:
        if isinstance(value, bool):
            return 5
        if isinstance(value, int):
            return 4
        if isinstance(value, float):
            return 10
        if isinstance(value, dict) and "username" in value:
            return 6
        return 3

    async def click_button(self, user: dict, message: dict, custom_id: str) -> Interaction:
        """`user` clicks the component `custom_id` on `message` (INTERACTION_CREATE type 3)."""
        current = self._all_messages.get(message["id"])
        if current is None:
            raise ValueError(f"unknown message {message['id']}")
        component = self._find_component(current.get("components") or [], custom_id)
        if component is None:
            raise ValueError(f"message {message['id']} has no component with custom_id {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = []
        if "id" in component:
            data["id"] = component["id"]
        return await self._create_interaction(user, 3, data, current["channel_id"], message=current)

    @classmethod
    def _find_component(cls, components: list[dict], custom_id: str) -> dict | None:
        for component in components:
            if component.get("custom_id") == custom_id:
                return component
            for key in ("components", "accessory"):
                inner = component.get(key)
                children = [inner] if isinstance(inner, dict) else inner or []
                found = cls._find_component(children, custom_id)
                if found is not None:
                    return found
        return None

    async def _create_interaction(
        self, user: dict, kind: int, data: dict, channel_id: str, *, message: dict | None = None
    ) -> Interaction:
        channel = self._channel(channel_id)
        if channel is None:
            raise ValueError(f"unknown channel {channel_id}")
        member = self._member(user["id"], with_user=True)
        if member is None:
            raise ValueError(f"{user['username']} is not a member of the guild")
        member["permissions"] = str(self.permissions_of(user["id"]))
        app_permissions = str(self.permissions_of(self.bot_user["id"]))
        interaction_id = self._next_id()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": kind,
            "data": data,
            "guild_id": self.guild_id,
            "guild": {"id": self.guild_id, "locale": "en-US", "features": []},
            "channel": {**copy.deepcopy(channel), "permissions": app_permissions},
            "channel_id": channel_id,
            "member": member,
            "token": token,
            "version": 1,
            "app_permissions": app_permissions,
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": self.guild_id},
            "context": 0,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if message is not None:
            payload["message"] = _public(message)
        interaction = Interaction(
            id=interaction_id,
            token=token,
            type=kind,
            user=self.users[user["id"]],
            channel_id=channel_id,
            payload=payload,
            created=time.monotonic(),
        )
        self.interactions[interaction_id] = interaction
        self._by_token[token] = interaction
        await self._dispatch("INTERACTION_CREATE", payload)
        return interaction

    # -------------------------------------------------------------------------------------- observing

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10) -> None:
        """Poll `predicate` until it is true; TimeoutError after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                recent = [(m["channel_id"], m["content"][:80]) for m in self.messages[-5:]]
                raise TimeoutError(f"condition not met within {timeout}s; last bot messages: {recent}")
            await asyncio.sleep(0.01)

    async def wait_for_message(self, predicate: Callable[[dict], Any], timeout: float = 10) -> dict:
        """The first message in `messages` (already there or still to come) that satisfies `predicate`."""
        found: list[dict] = []

        def check() -> bool:
            for message in self.messages:
                if predicate(message):
                    found.append(message)
                    return True
            return False

        await self.wait_for(check, timeout)
        return found[0]

    # ----------------------------------------------------------------------------------------- faults

    def rate_limit_next(
        self,
        method: str,
        path_regex: str,
        *,
        retry_after: float = 0.2,
        times: int = 1,
        is_global: bool = False,
    ) -> None:
        """Answer the next `times` matching REST calls with 429. `path_regex` must match the whole path
        after /api/v10 (e.g. r"/channels/\\d+/messages")."""
        self._rate_limits.append(
            _RateLimitRule(method.upper(), re.compile(path_regex), retry_after, times, is_global)
        )

    async def drop_gateway(self, code: int = 4000, *, resumable: bool = True) -> None:
        """Close the live gateway connection with `code`. The client reconnects and RESUMEs; with
        resumable=False the fake forgets the session first, so the RESUME gets op 9 (invalid session)
        and the client identifies again."""
        live = [c for c in self._conns if c.session is not None and not c.ws.closed]
        if not live:
            raise RuntimeError("no live gateway connection")
        conn = live[-1]
        if not resumable and conn.session is not None:
            self._sessions.pop(conn.session.id, None)
        await self._close_conn(conn, code, "dropped by the fake")

    # ------------------------------------------------------------------------------------ gateway side

    def _queue(self, event: str, data: Any, intent: int) -> list[_Conn]:
        conns = []
        for session in self._sessions.values():
            if intent and not session.intents & intent:
                continue
            payload = data(session) if callable(data) else data
            frame = {"op": 0, "t": event, "s": len(session.events) + 1, "d": payload}
            session.events.append(json.dumps(frame))
            if session.conn is not None and session.conn not in conns:
                conns.append(session.conn)
        return conns

    async def _dispatch(self, event: str, data: Any, *, intent: int = 0) -> None:
        for conn in self._queue(event, data, intent):
            await self._flush(conn)

    def _dispatch_soon(self, event: str, data: Any, *, intent: int = 0) -> None:
        for conn in self._queue(event, data, intent):
            self._spawn(self._flush(conn))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, conn: _Conn) -> None:
        async with conn.lock:
            session = conn.session
            while session is not None and session.conn is conn and conn.sent < len(session.events):
                text = session.events[conn.sent]
                conn.sent += 1
                if not await conn.send_text(text):
                    return

    async def _close_conn(self, conn: _Conn, code: int, reason: str) -> None:
        conn.server_closed = True
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None
        if not conn.ws.closed:
            await conn.ws.close(code=code, message=reason.encode())

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=5.0, max_msg_size=0)
        await ws.prepare(request)
        conn = _Conn(ws, zlib_stream=request.query.get("compress") == "zlib-stream")
        self.gateway_connections.append(
            {"path": request.path, "query": dict(request.query), "at": time.monotonic()}
        )
        self._conns.append(conn)
        try:
            if request.query.get("v", "10") != "10":
                await self._close_conn(conn, 4012, "Invalid API version.")
                return ws
            if request.query.get("encoding", "json") != "json":
                await self._close_conn(conn, 4002, "Error while decoding payload.")
                return ws
            interval = self.heartbeat_interval
            interval = int(interval) if float(interval).is_integer() else interval
            hello = {"heartbeat_interval": interval, "_trace": ['["fake-gateway",{}]']}
            await conn.send({"op": 10, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_gateway_payload(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await self._close_conn(conn, 4002, "Error while decoding payload.")
                if ws.closed:
                    break
        finally:
            self._conns.remove(conn)
            session = conn.session
            if session is not None:
                if session.conn is conn:
                    session.conn = None
                # A client's close with 1000/1001 ends its session (4000 and the like keep it resumable).
                if not conn.server_closed and ws.close_code in (1000, 1001):
                    self._sessions.pop(session.id, None)
        return ws

    async def _on_gateway_payload(self, conn: _Conn, text: str) -> None:
        try:
            payload = json.loads(text)
            op = payload["op"]
        except (ValueError, KeyError, TypeError):
            await self._close_conn(conn, 4002, "Error while decoding payload.")
            return
        data = payload.get("d")
        if op == 1:
            self.heartbeats += 1
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})
        elif conn.session is None:
            await self._close_conn(conn, 4003, "Not authenticated.")
        elif op == 3:
            self.presence_updates.append(data)
        elif op == 4:
            pass  # voice state update: no voice in the fake
        elif op == 8:
            await self._request_members(conn, data or {})
        else:
            await self._close_conn(conn, 4001, "Unknown opcode.")

    async def _identify(self, conn: _Conn, data: dict) -> None:
        if conn.session is not None:
            await self._close_conn(conn, 4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            await self._close_conn(conn, 4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents >= 1 << 26:
            await self._close_conn(conn, 4013, "Invalid intent(s).")
            return
        if intents & INTENT_MESSAGE_CONTENT and not self.allow_message_content:
            await self._close_conn(conn, 4014, "Disallowed intent(s).")
            return
        shard = data.get("shard", [0, 1])
        if not (isinstance(shard, list) and len(shard) == 2 and 0 <= shard[0] < shard[1]):
            await self._close_conn(conn, 4010, "Invalid shard.")
            return
        self.identify_payloads.append({k: v for k, v in data.items() if k != "token"})
        session = _Session(secrets.token_hex(16), intents, data)
        self._sessions[session.id] = session
        session.conn, conn.session, conn.sent = conn, session, 0
        self.identifies += 1
        ready = {
            "v": 10,
            "user_settings": {},
            "user": self._me(),
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "geo_ordered_rtc_regions": ["fake"],
            "shard": shard,
            "application": {"id": self.application_id, "flags": self._application()["flags"]},
            "_trace": ['["fake-gateway",{}]'],
        }
        session.events.append(json.dumps({"op": 0, "t": "READY", "s": 1, "d": ready}))
        guild = self._guild_create(session)
        session.events.append(json.dumps({"op": 0, "t": "GUILD_CREATE", "s": 2, "d": guild}))
        await self._flush(conn)

    async def _resume(self, conn: _Conn, data: dict) -> None:
        if conn.session is not None:
            await self._close_conn(conn, 4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            await self._close_conn(conn, 4004, "Authentication failed.")
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        old = session.conn
        if old is not None and old is not conn:
            await self._close_conn(old, 4000, "Session resumed elsewhere.")
        seq = data.get("seq") or 0
        session.conn, conn.session = conn, session
        conn.sent = max(0, min(int(seq), len(session.events)))
        self.resumes += 1
        await self._flush(conn)
        await conn.send({"op": 0, "t": "RESUMED", "s": None, "d": {"_trace": ['["fake-gateway",{}]']}})

    async def _request_members(self, conn: _Conn, data: dict) -> None:
        members = list(self.members.values())
        if data.get("user_ids"):
            wanted = {str(u) for u in data["user_ids"]}
            members = [m for m in members if m["user"]["id"] in wanted]
        elif data.get("query"):
            members = [m for m in members if m["user"]["username"].startswith(data["query"])]
        if data.get("limit"):
            members = members[: data["limit"]]
        chunk = {
            "guild_id": self.guild_id,
            "members": copy.deepcopy(members),
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        assert conn.session is not None
        conn.session.events.append(
            json.dumps({"op": 0, "t": "GUILD_MEMBERS_CHUNK", "s": len(conn.session.events) + 1, "d": chunk})
        )
        await self._flush(conn)

    # --------------------------------------------------------------------------------------- REST side

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Handler, bool]]:
        sf = r"(?P<{}>\d+)"
        channel = "/channels/" + sf.format("channel_id")
        message = channel + "/messages/" + sf.format("message_id")
        app = "/applications/" + sf.format("app_id")
        guild = "/guilds/" + sf.format("guild_id")
        hook = "/webhooks/" + sf.format("app_id") + r"/(?P<token>[^/]+)"
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/users/@me", self._get_me, True),
            ("GET", "/users/" + sf.format("user_id"), self._get_user, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", guild, self._get_guild, True),
            ("GET", guild + "/channels", self._get_guild_channels, True),
            ("GET", guild + "/roles", self._get_guild_roles, True),
            ("GET", guild + "/members/" + sf.format("user_id"), self._get_guild_member, True),
            ("GET", guild + "/threads/active", self._get_active_threads, True),
            ("GET", channel, self._get_channel, True),
            ("PATCH", channel, self._patch_channel, True),
            ("GET", channel + "/messages", self._get_messages, True),
            ("POST", channel + "/messages", self._post_message, True),
            ("GET", message, self._get_message, True),
            ("PATCH", message, self._patch_message, True),
            ("DELETE", message, self._delete_message, True),
            ("POST", channel + "/typing", self._typing, True),
            ("PUT", message + r"/reactions/(?P<emoji>[^/]+)/@me", self._add_reaction, True),
            ("DELETE", message + r"/reactions/(?P<emoji>[^/]+)/@me", self._remove_reaction, True),
            ("POST", message + "/threads", self._thread_from_message, True),
            ("POST", channel + "/threads", self._thread_without_message, True),
            ("PUT", channel + "/thread-members/@me", self._join_thread, True),
            ("GET", app + "/commands", self._get_commands, True),
            ("PUT", app + "/commands", self._put_commands, True),
            ("POST", app + "/commands", self._post_command, True),
            ("GET", app + "/commands/" + sf.format("command_id"), self._get_command, True),
            ("DELETE", app + "/commands/" + sf.format("command_id"), self._delete_command, True),
            ("GET", app + guild + "/commands", self._get_commands, True),
            ("PUT", app + guild + "/commands", self._put_commands, True),
            ("POST", app + guild + "/commands", self._post_command, True),
            ("GET", app + guild + "/commands/" + sf.format("command_id"), self._get_command, True),
            ("DELETE", app + guild + "/commands/" + sf.format("command_id"), self._delete_command, True),
            (
                "POST",
                "/interactions/" + sf.format("interaction_id") + r"/(?P<token>[^/]+)/callback",
                self._interaction_callback,
                False,
            ),
            ("POST", hook, self._execute_webhook, False),
            ("GET", hook + r"/messages/(?P<message_id>\d+|@original)", self._get_webhook_message, False),
            ("PATCH", hook + r"/messages/(?P<message_id>\d+|@original)", self._patch_webhook_message, False),
            (
                "DELETE",
                hook + r"/messages/(?P<message_id>\d+|@original)",
                self._delete_webhook_message,
                False,
            ),
        ]
        return [(method, re.compile(pattern), handler, auth) for method, pattern, handler, auth in table]

    async def _read_body(self, request: web.Request) -> tuple[Any, list[dict]]:
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            payload: Any = {}
            files = []
            for key, value in form.items():
                if key == "payload_json":
                    payload = json.loads(value if isinstance(value, str | bytes) else value.file.read())
                elif isinstance(value, web.FileField):
                    files.append(
                        {
                            "field": key,
                            "filename": value.filename,
                            "content_type": value.content_type,
                            "data": value.file.read(),
                        }
                    )
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode(errors="replace"), []

    def _ratelimit_headers(self, bucket: str) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        }

    def _take_rate_limit(self, method: str, path: str) -> _RateLimitRule | None:
        for rule in self._rate_limits:
            if rule.method == method and (
                rule.pattern.fullmatch(path) or rule.pattern.fullmatch(API_PREFIX + path)
            ):
                rule.times -= 1
                if rule.times <= 0:
                    self._rate_limits.remove(rule)
                return rule
        return None

    async def _http(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/attachments/") and request.method == "GET":
            attachment_id = request.path.split("/")[3] if request.path.count("/") >= 4 else ""
            if attachment_id in self.files:
                return web.Response(body=self.files[attachment_id], content_type="application/octet-stream")
        payload, files = await self._read_body(request)
        path = request.path[len(API_PREFIX) :] if request.path.startswith(API_PREFIX + "/") else request.path
        record = {
            "method": request.method,
            "path": path,
            "query": dict(request.query),
            "json": payload,
            "files": [
                {"field": f["field"], "filename": f["filename"], "size": len(f["data"])} for f in files
            ],
            "headers": dict(request.headers),
            "status": None,
            "at": time.monotonic(),
        }
        self.requests.append(record)
        response = await self._route(request, path, payload, files, record)
        record["status"] = response.status
        if record.get("unhandled"):
            self.unhandled.append(record)
        return response

    async def _route(
        self, request: web.Request, path: str, payload: Any, files: list[dict], record: dict
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            record["unhandled"] = True
            return _error(404, 0, "404: Not Found")
        method_mismatch = False
        for method, pattern, handler, auth in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method != request.method:
                method_mismatch = True
                continue
            rule = self._take_rate_limit(request.method, path)
            if rule is not None:
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": rule.retry_after,
                    "global": rule.is_global,
                }
                headers = {
                    "Via": "1.1 google",
                    "Retry-After": str(max(1, round(rule.retry_after + 0.5))),
                    "X-RateLimit-Limit": "50",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                    "X-RateLimit-Scope": "global" if rule.is_global else "user",
                }
                if rule.is_global:
                    headers["X-RateLimit-Global"] = "true"
                return _json_response(body, 429, headers)
            if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                return _error(401, 0, "401: Unauthorized")
            call = _Call(
                request, request.method, path, match.groupdict(), dict(request.query), payload, files
            )
            response = await handler(call)
            if 200 <= response.status < 300:
                for key, value in self._ratelimit_headers(f"fake{abs(hash(pattern.pattern)):x}").items():
                    response.headers.setdefault(key, value)
            return response
        record["unhandled"] = True
        if method_mismatch:
            return _error(405, 0, "405: Method Not Allowed")
        return _error(404, 0, "404: Not Found")

    # -- users, application, gateway, guild

    async def _get_me(self, call: _Call) -> web.Response:
        return _json_response(self._me())

    async def _get_user(self, call: _Call) -> web.Response:
        user = self.users.get(call.params["user_id"])
        return _json_response(user) if user else _error(404, 10013, "Unknown User")

    async def _get_application(self, call: _Call) -> web.Response:
        return _json_response(self._application())

    async def _get_gateway(self, call: _Call) -> web.Response:
        return _json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, call: _Call) -> web.Response:
        limits = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return _json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": limits})

    def _guild_or_404(self, call: _Call) -> web.Response | None:
        if call.params["guild_id"] != self.guild_id:
            return _error(404, 10004, "Unknown Guild")
        return None

    async def _get_guild(self, call: _Call) -> web.Response:
        return self._guild_or_404(call) or _json_response(self._guild())

    async def _get_guild_channels(self, call: _Call) -> web.Response:
        return self._guild_or_404(call) or _json_response(list(copy.deepcopy(self.channels).values()))

    async def _get_guild_roles(self, call: _Call) -> web.Response:
        return self._guild_or_404(call) or _json_response(list(copy.deepcopy(self.roles).values()))

    async def _get_guild_member(self, call: _Call) -> web.Response:
        problem = self._guild_or_404(call)
        if problem:
            return problem
        member = self._member(call.params["user_id"], with_user=True)
        return _json_response(member) if member else _error(404, 10007, "Unknown Member")

    async def _get_active_threads(self, call: _Call) -> web.Response:
        problem = self._guild_or_404(call)
        if problem:
            return problem
        threads = [copy.deepcopy(t) for t in self.threads.values() if not t["thread_metadata"]["archived"]]
        return _json_response({"threads": threads, "members": []})

    # -- channels and messages

    def _channel_or_404(self, call: _Call) -> tuple[dict | None, web.Response | None]:
        channel = self._channel(call.params["channel_id"])
        if channel is None:
            return None, _error(404, 10003, "Unknown Channel")
        return channel, None

    def _message_or_404(self, call: _Call) -> tuple[dict | None, web.Response | None]:
        _, problem = self._channel_or_404(call)
        if problem:
            return None, problem
        message = self._all_messages.get(call.params["message_id"])
        if message is None or message["channel_id"] != call.params["channel_id"]:
            return None, _error(404, 10008, "Unknown Message")
        return message, None

    async def _get_channel(self, call: _Call) -> web.Response:
        channel, problem = self._channel_or_404(call)
        return problem or _json_response(channel)

    async def _update_thread(self, thread: dict, payload: dict, editor_id: str) -> web.Response | None:
        """Discord's checks on a thread edit, then the change and THREAD_UPDATE; None when it worked."""
        may_manage = bool(self.permissions_of(editor_id) & MANAGE_THREADS)
        if not may_manage and thread["owner_id"] != editor_id:
            return _error(403, 50013, "Missing Permissions")
        if "applied_tags" in payload:
            parent = self.channels.get(thread["parent_id"]) or {}
            if parent.get("type") != 15:
                return _error(400, 50024, "Cannot execute action on this channel type")
            tags = {t["id"]: t for t in parent.get("available_tags", [])}
            wanted = [str(t) for t in payload["applied_tags"] or []]
            if len(wanted) > 5 or any(t not in tags for t in wanted):
                return _invalid_form(
                    {"applied_tags": _field_error("BASE_TYPE_BAD_VALUE", "Unknown tag or more than 5 tags.")}
                )
            changed = set(wanted) ^ set(thread["applied_tags"])
            if not may_manage and any(tags[t]["moderated"] for t in changed if t in tags):
                return _error(403, 50013, "Missing Permissions")
            thread["applied_tags"] = wanted
        if "name" in payload:
            name = str(payload["name"] or "")
            if not 1 <= len(name) <= 100:
                return _invalid_form(
                    {"name": _field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")}
                )
            thread["name"] = name
        for key in ("archived", "locked"):
            if key in payload:
                thread["thread_metadata"][key] = bool(payload[key])
        await self._dispatch("THREAD_UPDATE", copy.deepcopy(thread), intent=INTENT_GUILDS)
        if self.dispatch_grace:
            await asyncio.sleep(self.dispatch_grace)
        return None

    async def _patch_channel(self, call: _Call) -> web.Response:
        """Edits of threads (the bot's own edits of other channels are not modelled)."""
        thread = self.threads.get(call.params["channel_id"])
        if thread is None:
            _, problem = self._channel_or_404(call)
            return problem or _error(403, 50013, "Missing Permissions")
        payload = call.json if isinstance(call.json, dict) else {}
        self.thread_edits.append({"thread_id": thread["id"], "payload": copy.deepcopy(payload)})
        problem = await self._update_thread(thread, payload, self.bot_user["id"])
        return problem or _json_response(copy.deepcopy(thread))

    async def _get_messages(self, call: _Call) -> web.Response:
        _, problem = self._channel_or_404(call)
        if problem:
            return problem
        limit = max(1, min(100, int(call.query.get("limit", 50))))
        found = [m for m in self._all_messages.values() if m["channel_id"] == call.params["channel_id"]]
        if "before" in call.query:
            found = [m for m in found if int(m["id"]) < int(call.query["before"])]
        if "after" in call.query:
            found = [m for m in found if int(m["id"]) > int(call.query["after"])]
            found = sorted(found, key=lambda m: int(m["id"]))[:limit]
        found = sorted(found, key=lambda m: int(m["id"]), reverse=True)[:limit]
        return _json_response([_public(m) for m in found])

    async def _get_message(self, call: _Call) -> web.Response:
        message, problem = self._message_or_404(call)
        return problem or _json_response(_public(message))  # type: ignore[arg-type]

    async def _post_message(self, call: _Call) -> web.Response:
        _, problem = self._channel_or_404(call)
        if problem:
            return problem
        payload = call.json if isinstance(call.json, dict) else {}
        reference = payload.get("message_reference")
        if reference and reference.get("type", 0) == 0 and reference.get("message_id"):
            if str(reference["message_id"]) not in self._all_messages and reference.get(
                "fail_if_not_exists", True
            ):
                return _invalid_form(
                    {
                        "message_reference": _field_error(
                            "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                        )
                    }
                )
        channel_id = call.params["channel_id"]
        draft = {
            **payload,
            "attachments": [{}] * len(call.files) if call.files else payload.get("attachments"),
        }
        problem = self._validate(draft)
        if problem:
            return problem
        attachments = self._attachments(channel_id, payload, call.files, [])
        message = self._new_message(
            channel_id=channel_id, author=self.bot_user, payload=payload, attachments=attachments
        )
        self._record_bot_message(message, payload)
        await self._dispatch_message("MESSAGE_CREATE", message)
        return _json_response(_public(message))

    async def _patch_message(self, call: _Call) -> web.Response:
        message, problem = self._message_or_404(call)
        if problem:
            return problem
        assert message is not None
        if message["author"]["id"] != self.bot_user["id"]:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        problem = await self._edit(message, call.json if isinstance(call.json, dict) else {}, call.files)
        return problem or _json_response(_public(message))

    async def _delete_message(self, call: _Call) -> web.Response:
        message, problem = self._message_or_404(call)
        if problem:
            return problem
        assert message is not None
        if message["author"]["id"] != self.bot_user["id"] and not (
            self.permissions_of(self.bot_user["id"]) & MANAGE_MESSAGES
        ):
            return _error(403, 50013, "Missing Permissions")
        await self._delete(message)
        return web.Response(status=204)

    async def _typing(self, call: _Call) -> web.Response:
        _, problem = self._channel_or_404(call)
        return problem or web.Response(status=204)

    async def _add_reaction(self, call: _Call) -> web.Response:
        message, problem = self._message_or_404(call)
        if problem:
            return problem
        assert message is not None
        emoji = call.params["emoji"]
        reactions = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["emoji"]["name"] == emoji), None)
        if entry is None:
            reactions.append({"emoji": {"id": None, "name": emoji}, "count": 1, "me": True})
        elif not entry["me"]:
            entry["count"] += 1
            entry["me"] = True
        return web.Response(status=204)

    async def _remove_reaction(self, call: _Call) -> web.Response:
        message, problem = self._message_or_404(call)
        if problem:
            return problem
        assert message is not None
        reactions = message.get("reactions", [])
        for entry in list(reactions):
            if entry["emoji"]["name"] == call.params["emoji"] and entry["me"]:
                entry["count"] -= 1
                entry["me"] = False
                if entry["count"] <= 0:
                    reactions.remove(entry)
        return web.Response(status=204)

    # -- threads

    def _new_thread(self, thread_id: str, parent_id: str, payload: dict, kind: int) -> dict | web.Response:
        name = str(payload.get("name") or "")
        if not 1 <= len(name) <= 100:
            return _invalid_form(
                {"name": _field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")}
            )
        duration = int(payload.get("auto_archive_duration") or 4320)
        if duration not in (60, 1440, 4320, 10080):
            return _invalid_form(
                {
                    "auto_archive_duration": _field_error(
                        "BASE_TYPE_CHOICES", "Value must be one of {60, 1440, 4320, 10080}."
                    )
                }
            )
        now = _now_iso()
        thread = {
            "id": thread_id,
            "type": kind,
            "guild_id": self.guild_id,
            "parent_id": parent_id,
            "owner_id": self.bot_user["id"],
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": int(payload.get("rate_limit_per_user") or 0),
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": duration,
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
            },
        }
        if kind == 12:
            thread["thread_metadata"]["invitable"] = bool(payload.get("invitable", True))
        self.threads[thread_id] = thread
        return thread

    async def _announce_thread(self, thread: dict) -> web.Response:
        member = {
            "id": thread["id"],
            "user_id": self.bot_user["id"],
            "join_timestamp": _now_iso(),
            "flags": 1,
        }
        event = {**copy.deepcopy(thread), "newly_created": True, "member": member}
        await self._dispatch("THREAD_CREATE", event, intent=INTENT_GUILDS)
        if self.dispatch_grace:
            await asyncio.sleep(self.dispatch_grace)  # let the client process THREAD_CREATE before the reply
        return _json_response({**copy.deepcopy(thread), "member": member})

    async def _thread_from_message(self, call: _Call) -> web.Response:
        message, problem = self._message_or_404(call)
        if problem:
            return problem
        assert message is not None
        if call.params["channel_id"] not in self.channels:
            return _error(400, 50024, "Cannot execute action on this channel type")
        if message["id"] in self.threads:
            return _error(400, 160004, "A thread has already been created for this message")
        result = self._new_thread(message["id"], call.params["channel_id"], call.json or {}, 11)
        if isinstance(result, web.Response):
            return result
        message["flags"] |= FLAG_HAS_THREAD
        message["thread"] = copy.deepcopy(result)
        return await self._announce_thread(result)

    async def _thread_without_message(self, call: _Call) -> web.Response:
        _, problem = self._channel_or_404(call)
        if problem:
            return problem
        if call.params["channel_id"] not in self.channels:
            return _error(400, 50024, "Cannot execute action on this channel type")
        payload = call.json or {}
        kind = int(payload.get("type") or 12)
        if kind not in (11, 12):
            return _invalid_form(
                {"type": _field_error("BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")}
            )
        result = self._new_thread(self._next_id(), call.params["channel_id"], payload, kind)
        if isinstance(result, web.Response):
            return result
        return await self._announce_thread(result)

    async def _join_thread(self, call: _Call) -> web.Response:
        if call.params["channel_id"] not in self.threads:
            return _error(404, 10003, "Unknown Channel")
        return web.Response(status=204)

    # -- application commands

    def _command_scope(self, call: _Call) -> tuple[dict[str, dict] | None, web.Response | None]:
        if call.params["app_id"] != self.application_id:
            return None, _error(403, 50001, "Missing Access")
        if "guild_id" in call.params:
            problem = self._guild_or_404(call)
            return (None, problem) if problem else (self.guild_commands, None)
        return self.global_commands, None

    def _command_errors(self, command: dict) -> dict:
        errors: dict[str, Any] = {}
        kind = command.get("type", 1)
        name = command.get("name") or ""
        if kind == 1 and (not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower()):
            errors["name"] = _field_error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        description = command.get("description") or ""
        if kind == 1 and not 1 <= len(description) <= 100:
            errors["description"] = _field_error(
                "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        options = command.get("options") or []
        if len(options) > 25:
            errors["options"] = _field_error("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for index, option in enumerate(options):
            inner = self._command_errors({**option, "type": 1})
            if inner:
                errors.setdefault("options", {})[str(index)] = inner
        return errors

    def _store_command(self, scope: dict[str, dict], body: dict, existing: dict | None) -> dict:
        command = {
            "type": 1,
            "name": "",
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "integration_types": [0],
            "contexts": None,
            **copy.deepcopy(body),
            # Discord keeps a command's id when it is overwritten under the same name
            "id": existing["id"] if existing else self._next_id(),
            "application_id": self.application_id,
            "version": self._next_id(),
        }
        if scope is self.guild_commands:
            command["guild_id"] = self.guild_id
            command.pop("dm_permission", None)
        else:
            command.setdefault("dm_permission", True)
        scope[command["name"]] = command
        return command

    def _refresh_commands(self) -> None:
        self.commands = {**self.global_commands, **self.guild_commands}

    async def _get_commands(self, call: _Call) -> web.Response:
        scope, problem = self._command_scope(call)
        return problem or _json_response(list(copy.deepcopy(scope).values()))  # type: ignore[arg-type]

    async def _put_commands(self, call: _Call) -> web.Response:
        scope, problem = self._command_scope(call)
        if problem:
            return problem
        assert scope is not None
        bodies = call.json if isinstance(call.json, list) else []
        errors = {str(i): e for i, body in enumerate(bodies) if (e := self._command_errors(body))}
        if errors:
            return _invalid_form(errors)
        old = dict(scope)
        scope.clear()
        stored = [self._store_command(scope, body, old.get(body.get("name", ""))) for body in bodies]
        self._refresh_commands()
        return _json_response(copy.deepcopy(stored))

    async def _post_command(self, call: _Call) -> web.Response:
        scope, problem = self._command_scope(call)
        if problem:
            return problem
        assert scope is not None
        body = call.json if isinstance(call.json, dict) else {}
        errors = self._command_errors(body)
        if errors:
            return _invalid_form(errors)
        existing = scope.get(body.get("name", ""))
        command = self._store_command(scope, body, existing)
        self._refresh_commands()
        return _json_response(copy.deepcopy(command), 200 if existing else 201)

    def _find_command(self, call: _Call) -> tuple[dict[str, dict] | None, dict | None, web.Response | None]:
        scope, problem = self._command_scope(call)
        if problem:
            return None, None, problem
        assert scope is not None
        command = next((c for c in scope.values() if c["id"] == call.params["command_id"]), None)
        if command is None:
            return scope, None, _error(404, 10063, "Unknown application command")
        return scope, command, None

    async def _get_command(self, call: _Call) -> web.Response:
        _, command, problem = self._find_command(call)
        return problem or _json_response(copy.deepcopy(command))

    async def _delete_command(self, call: _Call) -> web.Response:
        scope, command, problem = self._find_command(call)
        if problem:
            return problem
        assert scope is not None and command is not None
        del scope[command["name"]]
        self._refresh_commands()
        return web.Response(status=204)

    # -- interactions and their webhooks

    async def _interaction_callback(self, call: _Call) -> web.Response:
        interaction = self.interactions.get(call.params["interaction_id"])
        if interaction is None or interaction.token != call.params["token"]:
            return _error(404, 10062, "Unknown interaction")
        if interaction.responses:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - interaction.created > self.interaction_timeout:
            return _error(404, 10062, "Unknown interaction")
        body = call.json if isinstance(call.json, dict) else {}
        kind = body.get("type")
        data = body.get("data") or {}
        resource: dict[str, Any] = {"type": kind}
        message: dict | None = None
        if kind in (4, 5):
            payload = dict(data) if kind == 4 else {"flags": int(data.get("flags") or 0) & FLAG_EPHEMERAL}
            if kind == 5:
                payload["flags"] = payload["flags"] | FLAG_LOADING
            else:
                draft = {
                    **payload,
                    "attachments": [{}] * len(call.files) if call.files else payload.get("attachments"),
                }
                problem = self._validate(draft)
                if problem:
                    return problem
            message = self._interaction_message(interaction, payload, call.files, original=True)
            interaction.original = message
            interaction.responses.append(copy.deepcopy(body))
            await self._dispatch_message("MESSAGE_CREATE", message)
            if kind == 4:
                resource["message"] = _public(message)
        elif kind in (6, 7):
            if interaction.type != 3:
                return _invalid_form(
                    {"type": _field_error("INTERACTION_RESPONSE_TYPE_INVALID", "Invalid type")}
                )
            message = self._all_messages.get(interaction.payload["message"]["id"])
            if message is None:
                return _error(404, 10008, "Unknown Message")
            if kind == 7:
                problem = await self._edit(message, data, call.files)
                if problem:
                    return problem
                resource["message"] = _public(message)
            interaction.original = message
            interaction.responses.append(copy.deepcopy(body))
        elif kind in (1, 8, 9, 12):
            interaction.responses.append(copy.deepcopy(body))
        else:
            return _invalid_form({"type": _field_error("BASE_TYPE_CHOICES", "Value must be a valid type.")})
        reply = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "activity_instance_id": None,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message["flags"] & FLAG_EPHEMERAL),
            },
            "resource": resource,
        }
        return _json_response(reply)

    def _interaction_message(
        self, interaction: Interaction, payload: dict, files: list[dict], *, original: bool
    ):
        extra = {
            "webhook_id": self.application_id,
            "application_id": self.application_id,
            "interaction_metadata": {
                "id": interaction.id,
                "type": interaction.type,
                "user": copy.deepcopy(interaction.user),
                "authorizing_integration_owners": {"0": self.guild_id},
            },
        }
        if interaction.type == 2:
            extra["interaction_metadata"]["name"] = interaction.payload["data"]["name"]
            extra["interaction"] = {
                "id": interaction.id,
                "type": 2,
                "name": interaction.payload["data"]["name"],
                "user": copy.deepcopy(interaction.user),
            }
        msg_type = 20 if original and interaction.type == 2 else 0
        attachments = self._attachments(interaction.channel_id, payload, files, [])
        message = self._new_message(
            channel_id=interaction.channel_id,
            author=self.bot_user,
            payload=payload,
            attachments=attachments,
            msg_type=msg_type,
            extra=extra,
        )
        self._record_bot_message(message, payload)
        return message

    def _webhook_interaction(self, call: _Call) -> Interaction | None:
        interaction = self._by_token.get(call.params["token"])
        if interaction is None or call.params["app_id"] != self.application_id:
            return None
        return interaction

    def _webhook_message(self, interaction: Interaction, message_id: str) -> dict | None:
        if message_id == "@original":
            return interaction.original
        candidates = [interaction.original, *interaction.followups]
        return next((m for m in candidates if m is not None and m["id"] == message_id), None)

    async def _execute_webhook(self, call: _Call) -> web.Response:
        interaction = self._webhook_interaction(call)
        if interaction is None or not interaction.responses:
            return _error(404, 10015, "Unknown Webhook")
        payload = call.json if isinstance(call.json, dict) else {}
        original = interaction.original
        if original is not None and original["flags"] & FLAG_LOADING and not original.get("deleted"):
            # The first followup after a deferred response fills the "thinking" message.
            problem = self._apply_edit(original, payload, call.files)
            if problem:
                return problem
            original["edited_timestamp"] = None
            original["payload"] = copy.deepcopy(payload)
            interaction.followups.append(original)
            await self._dispatch_message("MESSAGE_UPDATE", original)
            return _json_response(_public(original))
        draft = {
            **payload,
            "attachments": [{}] * len(call.files) if call.files else payload.get("attachments"),
        }
        problem = self._validate(draft)
        if problem:
            return problem
        message = self._interaction_message(interaction, payload, call.files, original=False)
        interaction.followups.append(message)
        await self._dispatch_message("MESSAGE_CREATE", message)
        return _json_response(_public(message))

    async def _get_webhook_message(self, call: _Call) -> web.Response:
        interaction = self._webhook_interaction(call)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        message = self._webhook_message(interaction, call.params["message_id"])
        if message is None or message.get("deleted"):
            return _error(404, 10008, "Unknown Message")
        return _json_response(_public(message))

    async def _patch_webhook_message(self, call: _Call) -> web.Response:
        interaction = self._webhook_interaction(call)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        message = self._webhook_message(interaction, call.params["message_id"])
        if message is None or message.get("deleted"):
            return _error(404, 10008, "Unknown Message")
        problem = await self._edit(message, call.json if isinstance(call.json, dict) else {}, call.files)
        if problem:
            return problem
        return _json_response(_public(message))

    async def _delete_webhook_message(self, call: _Call) -> web.Response:
        interaction = self._webhook_interaction(call)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        message = self._webhook_message(interaction, call.params["message_id"])
        if message is None or message.get("deleted"):
            return _error(404, 10008, "Unknown Message")
        await self._delete(message)
        return web.Response(status=204)
