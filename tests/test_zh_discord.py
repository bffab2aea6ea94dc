"""Discord's and the shared chat modules' messages come out in Simplified Chinese inside the
user's locale and unchanged in English: a finished job's status, the Cancel button, an
attachment over the limit, the admin audit option's localized description, recalled
parameters' operation line and size note, a job that is not ready. Static: no bot, no
services, no model."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from discord import app_commands
from PIL import Image

from bots.discord.admin_commands import admin_group
from bots.discord.command_translator import CatalogTranslator
from bots.discord.formatting import cancel_components, finished_text
from bots.discord.uploads import UploadError, check_size
from bots.followups import parent_image
from bots.limits import Limits
from bots.recall import recall_png, recall_text
from generator.png import encode_png, parameters_text
from generator.request import ImageRequest
from settings.i18n import use_locale
from tasks.core.jobs import Job, JobStatus, Requester

SOURCE = "0123456789abcdef" * 2
LIMITS = Limits(models=("default",), model_labels=(("default", "tiny"),))


def _job(status: JobStatus) -> Job:
    requester = Requester(platform="discord", user="1234", channel="99")
    return Job(requester=requester, request=ImageRequest(prompt="a slow fox"), status=status)


def test_a_cancelled_job_and_its_button_in_both_languages() -> None:
    job = _job(JobStatus.cancelled)
    assert finished_text(job) == "🛑 **a slow fox**\nCancelled."
    assert cancel_components(job.id)[0]["components"][0]["label"] == "Cancel"
    with use_locale("zh-CN"):
        assert finished_text(job) == "🛑 **a slow fox**\n已取消。"
        assert cancel_components(job.id)[0]["components"][0]["label"] == "取消"


def test_an_attachment_over_the_limit_is_refused_in_the_user_s_language() -> None:
    attachment: Any = SimpleNamespace(filename="fox.png", size=3 * 1024 * 1024)
    with pytest.raises(UploadError) as english:
        check_size(attachment, 1024 * 1024)
    assert str(english.value) == ("fox.png is 3.0 MB: this bot takes images up to 1.0 MB; "
                                  "send a smaller one.")
    with use_locale("zh_CN"), pytest.raises(UploadError) as chinese:
        check_size(attachment, 1024 * 1024)
    assert "fox.png" in str(chinese.value) and "3.0 MB" in str(chinese.value)
    assert "this bot" not in str(chinese.value)


def test_the_audit_count_description_is_localized_with_its_default() -> None:
    async def payload() -> dict[str, Any]:
        client = discord.Client(intents=discord.Intents.none())
        tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
        return await admin_group().get_translated_payload(tree, CatalogTranslator())

    commands = {option["name"]: option for option in asyncio.run(payload())["options"]}
    count = commands["audit"]["options"][0]
    assert count["name"] == "count"
    assert count["description"] == "How many (10 if left out)"
    assert count["description_localizations"] == {"zh-CN": "显示多少条（不填则为 10）"}


def test_recalled_parameters_name_the_operation_in_the_user_s_language() -> None:
    request = ImageRequest(prompt="a red fox", width=512, height=512, seed=7).varied(SOURCE, 0.6)
    english = recall_text(request, LIMITS)
    assert f"Operation: Image prompt of image {SOURCE} at strength 0.6 → 512x512" in english
    with use_locale("zh_CN"):
        chinese = recall_text(request, LIMITS)
    assert f"Operation：以强度 0.6 对图像 {SOURCE} 进行图像提示 → 512x512" in chinese
    assert english.splitlines()[0] == chinese.splitlines()[0]  # the prompt stays as written


def test_a_recalled_size_over_the_limit_is_noted_in_the_user_s_language() -> None:
    huge = ImageRequest(prompt="a red fox", seed=7).upscaled(SOURCE, 7, 8192, 8192, 4)
    data = encode_png(Image.new("RGB", (8, 8)), parameters_text(huge, 7, "tiny"))
    assert recall_png(data, LIMITS).notes == (
        "Size 8192x8192 is over this server's limit of 16777216 pixels "
        "(IMAGINE_MAX_UPSCALE_PIXELS): 4096x4096 used.",)
    with use_locale("zh_CN"):
        notes = recall_png(data, LIMITS).notes
    assert notes == ("尺寸 8192x8192 超过本服务器 16777216 像素的上限"
                     "（IMAGINE_MAX_UPSCALE_PIXELS）：已改用 4096x4096。",)


def test_a_job_that_is_not_ready_names_its_state_in_the_user_s_language() -> None:
    job = _job(JobStatus.queued)
    with pytest.raises(Exception) as english:
        parent_image(job, 0)
    assert "That job is still queued; wait until it is done" in str(english.value)
    with use_locale("zh_CN"), pytest.raises(Exception) as chinese:
        parent_image(job, 0)
    assert "排队中" in str(chinese.value) and "queued" not in str(chinese.value)
