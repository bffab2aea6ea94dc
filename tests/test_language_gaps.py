"""The language gaps of #16: the OpenAPI document describes `raw`, `enhance` and the
translated prompt; the Enhance action is refused without IMAGINE_ENHANCE_MODEL (400 on REST);
`imagine generate` prepares the prompt like a worker; prompt-URL image cards never draw CJK
text with a font that has no CJK glyphs (a CJK font of the system, else English). The Flask
app in this process and a real Redis."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bots.errors import PromptError
from bots.followups import ENHANCE, FollowUpLimits, follow_up
from bots.limits import Limits
from bots.web.app import create_app
from bots.web.card_fonts import card_font, card_locale, cjk_font_path, needs_wide_font
from bots.web.openapi_page import openapi_document
from bots.web.placeholder import error_png
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus, JobStore, Requester
from tests.web_support import with_settings


def test_the_openapi_document_describes_the_language_fields() -> None:
    document = openapi_document(Limits())
    schemas = document["components"]["schemas"]
    assert {"raw", "enhance"} <= set(schemas["NewJob"]["properties"])
    job = schemas["Job"]["properties"]
    assert job["prompt_original"]["type"] == ["string", "null"]
    assert {"prompt_language", "enhanced"} <= set(job)
    action = document["paths"]["/api/v1/jobs/{job_id}/actions"]["post"]
    schema = action["requestBody"]["content"]["application/json"]["schema"]
    assert ENHANCE in schema["properties"]["action"]["enum"]
    assert "enhance:" in schema["properties"]["action"]["description"]


def _finished(settings: Settings) -> Job:
    job = Job(requester=Requester(platform="api", user="someone"),
              request=ImageRequest(prompt="a cat", width=64, height=64, seed=3),
              status=JobStatus.done, images=["a.png"], seeds=[3])
    return JobStore(redis_client(settings), settings.job_ttl).save(job)


def test_enhance_is_refused_without_an_enhancement_model(settings: Settings) -> None:
    parent = _finished(settings)
    assert not FollowUpLimits.from_settings(settings).enhance
    with pytest.raises(PromptError, match="IMAGINE_ENHANCE_MODEL"):
        follow_up(parent, 0, ENHANCE, FollowUpLimits.from_settings(settings))
    client = create_app(settings).test_client()
    answer = client.post(f"/api/v1/jobs/{parent.id}/actions", json={"action": ENHANCE})
    assert answer.status_code == 400, answer.get_json()
    assert "IMAGINE_ENHANCE_MODEL" in answer.get_json()["error"]
    chinese = client.post(f"/api/v1/jobs/{parent.id}/actions", json={"action": ENHANCE},
                          headers={"Accept-Language": "zh-CN"})
    assert "此服务器没有提示词增强模型" in chinese.get_json()["error"]
    enhancing = with_settings(settings, enhance_model="/models/enhance")
    request = follow_up(parent, 0, ENHANCE, FollowUpLimits.from_settings(enhancing))
    assert request.enhance and request.seed is None


def test_generate_prints_nothing_new_without_language_models(settings: Settings) -> None:
    from bots.cli_language import prepared_request

    request = ImageRequest(prompt="一只猫", raw=True)
    assert prepared_request(request, with_settings(settings, translate_model="/x"), "cpu") \
        is request  # --raw: no model is even loaded
    plain = ImageRequest(prompt="一只猫")
    assert prepared_request(plain, settings, "cpu") is plain


def test_image_cards_never_draw_cjk_text_without_a_cjk_font(settings: Settings) -> None:
    assert needs_wide_font("错误") and not needs_wide_font("cannot draw this… café")
    font_path = cjk_font_path()
    assert card_locale("de") == "de" and card_locale(None) is None
    assert card_locale("zh_CN") == ("zh_CN" if font_path else None)
    assert card_font("错误")[1] is bool(font_path)
    assert Image.open(io.BytesIO(error_png("提示词无效", "错误"))).size == (384, 192)
    client = create_app(settings).test_client()
    url = "/?prompt=a+fox+--steps+0"
    zh = client.get(url, headers={"Accept-Language": "zh-CN", "Accept": "image/png"})
    en = client.get(url, headers={"Accept": "image/png"})
    assert zh.status_code == en.status_code == 400 and zh.mimetype == "image/png"
    assert (zh.data != en.data) is bool(font_path)  # no CJK font: the English card
    data = client.get(url, headers={"Accept-Language": "zh-CN",
                                    "Accept": "application/json"}).get_json()
    assert data["error"].startswith("--steps 必须是")  # JSON needs no font: still Chinese
