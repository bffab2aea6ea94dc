"""The bot speaks the user's language (#16): a Discord interaction with locale zh-CN and a
Slack user whose users.info says zh-CN get Chinese help and errors; a web client sending
Accept-Language: zh-CN gets its JSON error in Chinese; a message with no translation, and a
language with no catalog (zh-TW), fall back to English. Discord: a real `imagine discord`
process against the fake Discord (no workers); Slack and the web: the Flask app in this
process, a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.web.app import create_app
from settings import Settings
from settings.i18n import _, best_locale, negotiate, use_locale
from tasks.core.connection import redis_client
from tasks.core.jobs import EXTRA_LOCALE, JobStore
from tests.discord_support import DiscordStack, running_discord_stack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackSender, buttons
from tests.fixtures_redis import wait_for

ZH_USER = "U0000CHEN"


def test_a_missing_translation_and_a_language_without_catalog_fall_back_to_english() -> None:
    with use_locale("zh-CN") as chosen:
        assert chosen == "zh_CN"
        assert _("next in line") == "下一个"
        assert _("A message nobody translated.") == "A message nobody translated."
    # Traditional Chinese is not given the Simplified catalog: English instead.
    assert best_locale("zh-TW") is None and best_locale("zh") == "zh_CN"
    with use_locale("zh-TW") as chosen:
        assert chosen == "en" and _("next in line") == "next in line"
    assert negotiate("zh-TW, zh-CN;q=0.5, en;q=0.3") == "zh_CN"
    assert _("next in line") == "next in line"  # the block ended: English again


# --- Discord ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def discord_bot(redis_server: Any, tiny_model_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscordStack]:
    with running_discord_stack(redis_server, tmp_path_factory.mktemp("locale"), tiny_model_dir,
                               FakeDiscord().start(), workers=False,
                               IMAGINE_DISCORD_READY_TIMEOUT="0.2") as stack:
        yield stack


def _answer(stack: DiscordStack, payload: dict[str, Any], locale: str) -> str:
    payload["locale"] = locale
    interaction = stack.fake.dispatch("INTERACTION_CREATE", payload)
    call = wait_for(lambda: stack.fake.find("POST", rf"^/interactions/{interaction['id']}/"),
                    60, message=f"the callback\n{stack.logs()}")[0]
    return str(call.json["data"]["content"])


def test_discord_speaks_the_interaction_s_locale(discord_bot: DiscordStack) -> None:
    fake = discord_bot.fake
    help_zh = _answer(discord_bot, fake.command_payload(command="help"), "zh-CN")
    assert help_zh.startswith("**/imagine 提示词 [参数]** 按提示词绘图")
    assert "**结果下方的按钮**" in help_zh and "• 变体（局部）:" in help_zh
    assert "用法：提示词 [参数]" in help_zh and "• ⬅️ ➡️ ⬆️ ⬇️: 把图片向该方向延展" in help_zh
    error = _answer(discord_bot, fake.command_payload(prompt="a fox --steps 0"), "zh-CN")
    assert error.startswith("⚠️ --steps 必须是1 到 ") and "用法：" in error
    # The same command from an English client, and the next one, stay English.
    error_en = _answer(discord_bot, fake.command_payload(prompt="a fox --steps 0"), "en-US")
    assert error_en.startswith("⚠️ --steps must be a whole number from 1 to ")
    assert "Usage:" in error_en


# --- Slack ------------------------------------------------------------------------------


@pytest.fixture
def sender(serve_app: Callable[..., str], slack: FakeSlack) -> SlackSender:
    base = serve_app(slack_signing_secret=SIGNING_SECRET, slack_bot_token=BOT_TOKEN,
                     slack_api_url=slack.api_url)
    return SlackSender(base, slack)


def test_slack_speaks_the_user_s_locale_from_users_info(sender: SlackSender, slack: FakeSlack,
                                                        settings: Settings) -> None:
    slack.users[ZH_USER] = {"locale": "zh-CN"}
    help_zh = sender.command("help", user=ZH_USER).json()["text"]
    assert help_zh.startswith("*/imagine 提示词 [参数]* 按提示词绘图")
    error = sender.command("a fox --ar 17:1", user=ZH_USER).json()["text"]
    assert error.startswith("--ar 必须是宽高比 W:H") and "用法：" in error
    assert "`/imagine models` 列出" in error
    english = sender.command("a fox --ar 17:1").json()["text"]  # a user without zh-CN
    assert english.startswith("--ar must be a ratio W:H") and "Usage:" in english
    # The language is asked once a day per user (Redis), with include_locale.
    lookups = [c for c in slack.of("users.info") if c.params.get("user") == ZH_USER]
    assert len(lookups) == 1 and lookups[0].params.get("include_locale") in ("1", "true")
    # The job records it, so the workers and the deliverer speak it too.
    assert sender.command("a fox", user=ZH_USER).status_code == 200
    post = wait_for(lambda: slack.of("chat.postMessage"), message="the status message")[0]
    status = slack.message(post.answer["channel"], post.answer["ts"])
    job_id = buttons(status)["取消"]["value"]  # the Cancel button, labelled in Chinese
    jobs = JobStore(redis_client(settings), settings.job_ttl)
    job = wait_for(lambda: jobs.find(job_id), message="the job's record")
    assert job.requester.extra[EXTRA_LOCALE] == "zh_CN"


# --- the web ----------------------------------------------------------------------------


def test_web_json_errors_follow_accept_language(settings: Settings) -> None:
    client = create_app(settings).test_client()
    query = {"prompt": "a fox --steps 0"}
    zh = client.get("/", query_string=query, headers={
        "Accept": "application/json", "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert zh.status_code == 400
    assert zh.get_json()["error"].startswith("--steps 必须是1 到 ")
    en = client.get("/", query_string=query, headers={"Accept": "application/json"})
    assert en.get_json()["error"].startswith("--steps must be a whole number from 1 to ")
    tw = client.get("/", query_string=query, headers={
        "Accept": "application/json", "Accept-Language": "zh-TW"})
    assert tw.get_json()["error"].startswith("--steps must be")
    time.sleep(0)  # nothing runs in the background: the app answered in this thread
