"""The settings of a shared server's rules: image safety, prompt policy, who may use the bot,
daily quotas and the audit trail. `Settings` inherits them (settings/__init__.py); they are
kept here so each part reads as one page.

Lists given as a variable are comma-separated (`IMAGINE_DISCORD_ROLES=123,456`) or JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

# What happens to an image the classifier flags, per destination (tasks/policy/safety.py):
# allow: delivered as is; spoiler: Discord SPOILER_ attachment, elsewhere a blurred copy with
# the original only on the requester's explicit request; block: not delivered, kept for admins.
SafetyAction = Literal["allow", "spoiler", "block"]
SAFETY_ACTIONS: tuple[str, ...] = ("allow", "spoiler", "block")
# Where an image goes, as the safety policy names it.
DESTINATIONS: tuple[str, ...] = ("discord_nsfw", "discord", "discord_dm", "slack", "slack_dm",
                                 "web", "api", "webhook", "cli")
# Discord: flagged images only in age-restricted channels, never in DMs; prompt URLs never.
DEFAULT_SAFETY_POLICY: dict[str, str] = {
    "discord_nsfw": "allow", "discord": "block", "discord_dm": "block", "slack": "spoiler",
    "slack_dm": "spoiler", "web": "block", "api": "spoiler", "webhook": "spoiler",
    "cli": "allow"}


def _id_list(value: Any) -> Any:
    """"a, b" or a JSON list → a tuple of non-empty strings, order kept, duplicates dropped."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(dict.fromkeys(str(part).strip() for part in value if str(part).strip()))
    return value


class GovernanceSettings(BaseSettings):
    # --- image safety -------------------------------------------------------------------
    # A transformers image-classification model (hub id or folder), e.g.
    # Falconsai/nsfw_image_detection (Apache-2.0); unset: no classification (a pipeline's
    # own safety checker is still honoured).
    nsfw_model: str | None = None
    # An image whose NSFW probability reaches this is flagged.
    nsfw_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    # destination=action pairs over DEFAULT_SAFETY_POLICY: IMAGINE_NSFW_POLICY=discord=spoiler,web=spoiler
    nsfw_policy: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Labels of the classifier that mean NSFW (the others are safe); matched case-insensitively.
    nsfw_labels: Annotated[tuple[str, ...], NoDecode] = ("nsfw", "porn", "hentai", "sexy")

    # --- prompt policy ------------------------------------------------------------------
    # A file: one entry a line, `#` comments, `re:` before a regular expression; plain
    # entries match whole words after normalisation. Reloaded when it changes.
    prompt_blocklist: Path | None = None

    # --- who may use it (empty: everyone) ----------------------------------------------------
    slack_channels: Annotated[tuple[str, ...], NoDecode] = ()
    slack_user_groups: Annotated[tuple[str, ...], NoDecode] = ()
    slack_dms: bool = True
    discord_guilds: Annotated[tuple[str, ...], NoDecode] = ()
    discord_channels: Annotated[tuple[str, ...], NoDecode] = ()
    discord_roles: Annotated[tuple[str, ...], NoDecode] = ()
    discord_dms: bool = True
    # Named API tokens, JSON name → token: jobs are attributed to the name. IMAGINE_API_TOKEN
    # stays valid as the token named "default".
    api_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    # Names of IMAGINE_API_TOKENS that may read the audit trail (GET /api/v1/audit).
    api_admins: Annotated[tuple[str, ...], NoDecode] = ()

    # --- quotas (0: no limit) -------------------------------------------------------------
    daily_quota: int = Field(default=0, ge=0, description="images per user per UTC day")
    daily_gpu_seconds: float = Field(default=0.0, ge=0.0,
                                     description="generation seconds per user per UTC day")
    # Per Discord role or Slack user group, JSON: {"discord:role:123": 100, "slack:group:S1": 0}
    # (0: no limit); a user gets the largest of the overrides that apply.
    quota_overrides: dict[str, int] = Field(default_factory=dict)

    # --- admins and the audit trail -----------------------------------------------------------
    # Where Report buttons send reports: a Slack channel id, a Discord channel id.
    slack_report_channel: str | None = None
    discord_report_channel: str | None = None
    audit_days: float = Field(default=30.0, gt=0.0,
                              description="days an audit entry (it holds prompts) is kept")
    audit_max_entries: int = Field(default=1_000_000, ge=100)

    @field_validator("slack_channels", "slack_user_groups", "discord_guilds", "discord_channels",
                     "discord_roles", "api_admins", "nsfw_labels", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _id_list(value)

    @field_validator("nsfw_policy", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                value = json.loads(text)
            else:
                value = dict(_policy_pair(part) for part in text.split(",") if part.strip())
        if isinstance(value, dict):
            for destination, action in value.items():
                _policy_pair(f"{destination}={action}")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, token in value.items():
            if not name.strip() or len(name) > 64:
                raise ValueError(f"token name {name!r} must be 1-64 characters")
            if len(token.get_secret_value().strip()) < 16:
                raise ValueError(f"the token named {name!r} is shorter than 16 characters")
        return value

    @property
    def safety_policy(self) -> dict[str, str]:
        """Every destination's action: DEFAULT_SAFETY_POLICY with IMAGINE_NSFW_POLICY over it."""
        return {**DEFAULT_SAFETY_POLICY, **self.nsfw_policy}


def _policy_pair(pair: str) -> tuple[str, str]:
    destination, _, action = (part.strip() for part in pair.partition("="))
    if destination not in DESTINATIONS or action not in SAFETY_ACTIONS:
        raise ValueError(f"{pair.strip()!r}: give destination=action pairs separated by commas, "
                         f"destinations {', '.join(DESTINATIONS)}, actions "
                         f"{', '.join(SAFETY_ACTIONS)}, e.g. discord=spoiler,web=block")
    return destination, action
