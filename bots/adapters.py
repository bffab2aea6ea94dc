"""The delivery adapter of each platform, registered where the processes are wired (the CLI).

`tasks/` defines the registry and names no platform. Each factory imports its platform's
module only when first called: a generate worker only asks which platforms want
deliveries, so it never imports slack_sdk or discord, and a deliver worker imports only the
platforms its jobs actually come from.
"""

from __future__ import annotations

from settings import Settings
from tasks.core.delivery import Adapter, AdapterRegistry


def slack_delivery(settings: Settings) -> Adapter:
    from bots.slack.delivery import SlackDelivery  # noqa: PLC0415 - slack_sdk on first use

    return SlackDelivery(settings)


def discord_delivery(settings: Settings) -> Adapter:
    from bots.discord.delivery import DiscordDelivery  # noqa: PLC0415 - on first use

    return DiscordDelivery(settings)


def webhook_delivery(settings: Settings) -> Adapter:
    from bots.web.webhook_delivery import WebhookDelivery  # noqa: PLC0415 - on first use

    return WebhookDelivery(settings)


def delivery_adapters() -> AdapterRegistry:
    """Every platform whose jobs are posted back to it by the deliver worker."""
    registry = AdapterRegistry()
    registry.register("slack", slack_delivery)
    registry.register("discord", discord_delivery)
    registry.register("webhook", webhook_delivery)
    return registry
