"""discord.py has no per-client base URL, so the bot's composition root redirects it process-wide;
this is the one place that does it, and it undoes itself."""

from __future__ import annotations

import discord.gateway
import discord.http

from bot.app import redirect_discord_endpoints
from ragcord.settings import Settings


def endpoints() -> tuple[str, str]:
    return discord.http.Route.BASE, str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)


def test_settings_send_rest_and_gateway_traffic_elsewhere_until_restored():
    before = endpoints()
    settings = Settings(
        _env_file=None,
        discord_api_base_url="http://127.0.0.1:9/api/v10/",
        discord_gateway_url="ws://127.0.0.1:9/gateway",
    )
    restore = redirect_discord_endpoints(settings)
    try:
        assert endpoints() == ("http://127.0.0.1:9/api/v10", "ws://127.0.0.1:9/gateway")
        assert discord.http.Route("GET", "/gateway/bot").url == "http://127.0.0.1:9/api/v10/gateway/bot"
    finally:
        restore()
    assert endpoints() == before


def test_without_those_settings_discord_py_keeps_its_own_endpoints():
    before = endpoints()
    restore = redirect_discord_endpoints(Settings(_env_file=None))
    assert endpoints() == before
    restore()
    assert endpoints() == before
