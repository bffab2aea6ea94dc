"""Who may use the bot where (tasks/policy/access.py) on Slack, Discord and the web, named
API tokens, and a blocklisted prompt refused with the same message on every front end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bots.web import tokens
from settings import Settings
from settings.i18n import _
from tasks.core.connection import redis_client
from tasks.core.jobs import EXTRA_DM, EXTRA_GUILD, EXTRA_ROLES, Requester
from tasks.errors import AccessDenied
from tasks.policy.access import check_access
from tasks.policy.audit import AuditLog
from tasks.policy.blocklist import REFUSAL
from tests.discord_support import DiscordStack, running_discord_stack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackSender
from tests.fixtures_redis import wait_for
from tests.web_support import with_settings

JSON = {"Accept": "application/json"}
CI_TOKEN = "ci-token-0123456789abcdef"


def refusal_of(settings: Settings, requester: Requester, parent: str = "") -> str | None:
    try:
        check_access(settings, requester, parent_channel=parent)
    except AccessDenied as exc:
        return exc.rule
    return None


def test_each_rule_of_each_platform(settings: Settings) -> None:
    open_ = settings
    assert refusal_of(open_, Requester(platform="slack", user="U1", channel="D1",
                                       extra={EXTRA_DM: "1"})) is None
    slack = with_settings(settings, slack_channels="C1,C2", slack_user_groups="S1",
                          slack_dms=False)

    def on_slack(channel: str, groups: str = "S1", dm: bool = False) -> str | None:
        extra = {EXTRA_ROLES: groups, **({EXTRA_DM: "1"} if dm else {})}
        return refusal_of(slack, Requester(platform="slack", user="U1", channel=channel,
                                           extra=extra))

    assert on_slack("C2") is None
    assert on_slack("C3") == "access: channel"
    assert on_slack("C1", groups="S9,S8") == "access: group"
    assert on_slack("D1", dm=True) == "access: dm"
    discord = with_settings(settings, discord_guilds="G1", discord_channels="10",
                            discord_roles="R1,R2", discord_dms=True)

    def on_discord(channel: str, roles: str = "R2", guild: str = "G1", parent: str = "",
                   dm: bool = False) -> str | None:
        extra = {EXTRA_ROLES: roles, EXTRA_GUILD: "" if dm else guild,
                 **({EXTRA_DM: "1"} if dm else {})}
        return refusal_of(discord, Requester(platform="discord", user="1", channel=channel,
                                             extra=extra), parent)

    assert on_discord("10") is None
    assert on_discord("77", parent="10") is None  # a thread of an allowed channel
    assert on_discord("11") == "access: channel"
    assert on_discord("10", guild="G2") == "access: guild"
    assert on_discord("10", roles="R3") == "access: role"
    assert on_discord("5", dm=True) == "access: role"  # roles cannot be seen in a DM
    no_dms = with_settings(settings, discord_dms=False)
    assert refusal_of(no_dms, Requester(platform="discord", user="1", channel="5",
                                        extra={EXTRA_DM: "1"})) == "access: dm"
    with pytest.raises(AccessDenied) as channel:
        check_access(discord, Requester(platform="discord", user="1", channel="11",
                                        extra={EXTRA_GUILD: "G1", EXTRA_ROLES: "R1"}))
    assert channel.value.message == ("imagine is not enabled in this channel; ask an admin, "
                                     "or use it in <#10>.")


@pytest.fixture
def blocklist(tmp_path: Path) -> Path:
    path = tmp_path / "blocklist.txt"
    path.write_text("# test entries\nfoo\n", encoding="utf-8")
    return path


def test_slack_refusals_are_ephemeral_nothing_is_queued_and_the_audit_has_the_rule(
        serve_app: Callable[..., str], slack: FakeSlack, settings: Settings,
        blocklist: Path) -> None:
    slack.user_groups = {"S1": ["U0000USER"]}
    base = serve_app(slack_signing_secret=SIGNING_SECRET, slack_bot_token=BOT_TOKEN,
                     slack_api_url=slack.api_url, slack_channels="C0000CHAN,C0000ART",
                     slack_user_groups="S1", slack_dms=False, prompt_blocklist=blocklist)
    sender = SlackSender(base, slack)

    def answer(text: str, **where: str) -> str:
        reply = sender.command(text, **where).json()
        assert reply["response_type"] == "ephemeral", reply
        return str(reply["text"])

    assert answer("a red f.o.o") == _(REFUSAL)  # allowed here, but the prompt is not
    assert answer("a fox", channel="C0000ELSE") == (
        "imagine is not enabled in this channel; ask an admin, or use it in <#C0000CHAN>, "
        "<#C0000ART>.")
    assert answer("a fox", user="U0000OTHER").startswith(
        "imagine here is only for members of one of these user groups: <!subteam^S1>")
    assert answer("a fox", channel="D0000USER").startswith(
        "imagine is not available in direct messages here")
    sender.mention("a fox", channel="C0000ELSE")
    told = wait_for(lambda: slack.of("chat.postEphemeral"), message="an ephemeral answer")
    assert told[0].params["text"].startswith("imagine is not enabled in this channel")
    assert not slack.of("chat.postMessage", ok=None)  # nothing was queued
    assert len(slack.of("usergroups.users.list")) == 1  # the group's members are cached
    rules = [entry.rule for entry in AuditLog(settings, redis_client(settings)).last(10)
             if entry.event == "policy.refused"]
    assert rules == ["blocklist: foo", "access: channel", "access: group", "access: dm",
                     "access: channel"]


def test_rest_and_prompt_urls_refuse_with_the_same_message_and_tokens_have_names(
        serve_app: Callable[..., str], settings: Settings, blocklist: Path) -> None:
    base = serve_app(prompt_blocklist=blocklist, api_token="default-token-0123456789",
                     api_tokens={"ci": CI_TOKEN}, api_admins="ci")
    ci = {"Authorization": f"Bearer {CI_TOKEN}"}
    refused = requests.post(f"{base}/api/v1/jobs", json={"prompt": "a Ｆｏｏ"}, headers=ci,
                            timeout=30)
    assert refused.status_code == 403 and refused.json()["error"] == _(REFUSAL)
    card = requests.get(base, params={"prompt": "a foo", "wait": "0"}, timeout=30)
    assert card.status_code == 403 and card.headers["Content-Type"] == "image/png"
    as_json = requests.get(base, params={"prompt": "a foo", "wait": "0"}, headers=JSON,
                           timeout=30)
    assert as_json.status_code == 403 and as_json.json()["error"] == _(REFUSAL)
    made = requests.post(f"{base}/api/v1/jobs", json={"prompt": "a fox"}, headers=ci,
                         timeout=30)
    assert made.status_code == 202
    default = requests.post(f"{base}/api/v1/jobs", json={"prompt": "a fox"}, timeout=30,
                            headers={"Authorization": "Bearer default-token-0123456789"})
    assert default.status_code == 202
    client = redis_client(settings)
    audit = AuditLog(settings, client).last(10)
    assert [(entry.event, entry.user) for entry in audit] == [
        ("policy.refused", "api:ci"), ("policy.refused", "web:127.0.0.1"),
        ("policy.refused", "web:127.0.0.1"), ("job.submitted", "api:ci"),
        ("job.submitted", "api:default")]
    # Only its own token's holder may cancel a job.
    assert requests.delete(f"{base}/api/v1/jobs/{made.json()['id']}", timeout=30,
                           headers={"Authorization": "Bearer default-token-0123456789"}
                           ).status_code == 404
    assert requests.delete(f"{base}/api/v1/jobs/{made.json()['id']}", headers=ci,
                           timeout=30).status_code == 200
    named = with_settings(settings, api_token="default-token-0123456789",
                          api_tokens={"ci": CI_TOKEN}, api_admins="ci")
    assert tokens.token_name(named, f"Bearer {CI_TOKEN}") == "ci"
    assert tokens.token_name(named, "bearer default-token-0123456789") == "default"
    assert tokens.token_name(named, "Bearer nope") is None
    assert tokens.token_name(named, None) is None
    assert tokens.is_admin(named, "ci") and not tokens.is_admin(named, "default")


@pytest.fixture
def guarded_bot(redis_server: Any, tiny_model_dir: Path, tmp_path: Path,
                blocklist: Path) -> Iterator[tuple[DiscordStack, str]]:
    """`imagine discord` alone (nothing is drawn): one channel, one role, no DMs."""
    fake = FakeDiscord()
    role = fake.role("artists")
    with running_discord_stack(redis_server, tmp_path, tiny_model_dir, fake.start(),
                               workers=False, IMAGINE_DISCORD_READY_TIMEOUT="0.2",
                               IMAGINE_DISCORD_CHANNELS=fake.channel_id,
                               IMAGINE_DISCORD_ROLES=role, IMAGINE_DISCORD_DMS="false",
                               IMAGINE_PROMPT_BLOCKLIST=str(blocklist)) as stack:
        yield stack, role


def test_discord_refusals_are_ephemeral_or_replies_in_place(
        guarded_bot: tuple[DiscordStack, str]) -> None:
    stack, role = guarded_bot
    fake = stack.fake

    def ephemeral(payload: dict[str, Any]) -> str:
        fake.dispatch("INTERACTION_CREATE", payload)
        call = wait_for(lambda: fake.find("POST", rf"^/interactions/{payload['id']}/"), 60,
                        message=f"the callback\n{stack.logs()}")[0]
        assert call.json["type"] == 4 and call.json["data"]["flags"] & 64
        return str(call.json["data"]["content"])

    artist = fake.command_payload(prompt="a f o o")
    artist["member"]["roles"] = [role]
    assert ephemeral(artist) == f"⚠️ {_(REFUSAL)}"
    assert ephemeral(fake.command_payload(prompt="a fox")) == (
        f"⚠️ imagine here is only for members with one of these roles: <@&{role}>; ask an "
        "admin.")

    def reply(payload: dict[str, Any]) -> str:
        fake.dispatch("MESSAGE_CREATE", payload)
        path = rf"^/channels/{payload['channel_id']}/messages$"
        return str(wait_for(lambda: fake.find("POST", path), 60,
                            message=f"a reply\n{stack.logs()}")[0].json["content"])

    author = fake.user("bob")
    assert reply(fake.message_payload("a fox", author, mention_bot=False, dm=True,
                                      channel_id=fake.dm_channel(author)["id"])).startswith(
        "⚠️ imagine is not available in direct messages here")
    elsewhere = reply(fake.message_payload("a fox", author, channel_id="4242"))
    assert elsewhere == (f"⚠️ imagine is not enabled in this channel; ask an admin, or use it "
                         f"in <#{fake.channel_id}>.")
    assert not fake.find("POST", r"^/webhooks/")  # no job, so no "queued" message
