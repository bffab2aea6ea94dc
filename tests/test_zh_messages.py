"""Messages made across the code base come out in Simplified Chinese inside the user's locale
and unchanged in English: Slack status lines, Discord's localized slash commands, recall
notes, image and outbound URL refusals, job states, a held Slack prompt's language. Static:
no services, no model."""

from __future__ import annotations

import asyncio

import discord
import pytest
from discord import app_commands

from bots.discord.command_translator import CatalogTranslator
from bots.discord.commands import help_command, imagine_command, recall_menu
from bots.limits import Limits
from bots.permissions import cancel_refusal
from bots.slack import text as say
from bots.slack.intake import Held
from generator.errors import ImageRejected
from generator.source_images import prepare_source
from settings import Settings
from settings.i18n import use_locale
from tasks.core.outbound import OutboundPolicy, OutboundRefused, check_url


def test_slack_status_lines_in_both_languages() -> None:
    assert say.queued_line(3, "~40 s") == "queued, #3, ~40 s"
    assert say.done_line([7], 1.25) == "done in 1.2 s · seed 7 · images in the thread"
    with use_locale("zh-CN"):
        assert say.queued_line(3, "~40 s") == "排队中，第 3 位，~40 s"
        assert say.done_line([7], None) == "已完成 · 种子 7 · 图像在帖子中"
        assert cancel_refusal() == "只有 提问的人 或版主可以取消此任务。"


def test_a_held_slack_prompt_keeps_the_language_it_was_acked_in() -> None:
    with use_locale("zh_CN"):
        held = Held(user="U1", channel="C1", text="一只狐狸")
    assert held.locale == "zh_CN"
    assert Held.model_validate_json(held.model_dump_json()).locale == "zh_CN"
    assert Held(user="U1", channel="C1").locale == "en"


def test_discord_commands_carry_chinese_descriptions() -> None:
    async def payloads() -> list[dict[str, object]]:
        client = discord.Client(intents=discord.Intents.none())
        tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
        translator = CatalogTranslator()
        limits = Limits.from_settings(Settings())
        return [await command.get_translated_payload(tree, translator)
                for command in (help_command, imagine_command(limits), recall_menu())]

    help_payload, imagine_payload, menu_payload = asyncio.run(payloads())
    assert help_payload["name"] == "help"
    assert help_payload["description_localizations"] == {
        "zh-CN": "如何绘图：提示词参数、按钮和示例（仅你可见）。"}
    assert not help_payload.get("name_localizations")  # what users type stays the same
    options = {option["name"]: option for option in imagine_payload["options"]}  # type: ignore[attr-defined]
    assert options["aspect_ratio"]["description_localizations"] == {"zh-CN": "图像的形状"}
    assert options["aspect_ratio"]["name"] == "aspect_ratio"
    assert menu_payload["name"] == "Recall"
    assert menu_payload["name_localizations"] == {"zh-CN": "查看参数"}


def test_source_image_and_outbound_refusals_name_the_thing_in_the_user_s_language() -> None:
    with pytest.raises(ImageRejected) as english:
        prepare_source(b"not an image", max_bytes=1000, max_pixels=512 * 512)
    assert str(english.value.message).startswith("The image is not an image Pillow can read")
    with use_locale("zh_CN"), pytest.raises(ImageRejected) as chinese:
        prepare_source(b"not an image", max_bytes=1000, max_pixels=512 * 512)
    assert chinese.value.message.startswith("图像不是这里的 Pillow 能读取的图像")

    policy = OutboundPolicy()
    with use_locale("zh_CN"), pytest.raises(OutboundRefused) as refused:
        check_url("http://127.0.0.1/hook", policy, what="webhook")
    assert "是回环地址" in str(refused.value)
    assert "IMAGINE_OUTBOUND_ALLOW" in str(refused.value)
    with pytest.raises(OutboundRefused) as english_refusal:
        check_url("http://127.0.0.1/hook", policy, what="webhook")
    assert "webhook address 127.0.0.1 is a loopback address" in str(english_refusal.value)
