"""The app manifest asks for what the app uses: the command, events, scopes, interactivity."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.slack.listeners import COMMAND

MANIFEST = Path(__file__).resolve().parent.parent / "bots" / "slack_manifest.yml"


def test_manifest_matches_the_app() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load(MANIFEST.read_text())
    features, settings = manifest["features"], manifest["settings"]
    assert [c["command"] for c in features["slash_commands"]] == [COMMAND]
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.im"}
    assert settings["interactivity"]["is_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "app_mentions:read", "chat:write", "files:write", "im:history",
            "users:read"} <= scopes  # users:read: users.info, who may cancel others' jobs
    assert "files:read" in scopes  # images shared with a prompt: downloaded with the token
    assert "usergroups:read" in scopes  # who is in IMAGINE_SLACK_USER_GROUPS
    # A file shared in a direct message arrives as message.im (subtype file_share).
    urls = {features["slash_commands"][0]["url"], settings["interactivity"]["request_url"],
            settings["event_subscriptions"]["request_url"]}
    assert len(urls) == 1 and urls.pop().endswith("/slack/events")
