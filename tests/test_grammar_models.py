"""The grammar of LoRAs (--lora, <lora:…> tags, the lora field) and ControlNet (--cn), and
their round trip through a PNG's parameters text and recall."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bots.errors import PromptError
from bots.grammar import (
    fields_with_control,
    format_request,
    parse,
    parse_with_control,
    request_from_fields,
)
from bots.limits import Limits
from bots.model_flags import LISTING_SECONDS, Control
from bots.recall import recall_png
from generator import png
from generator.request import ImageRequest, LoraUse
from settings import Settings

STORED = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def lora_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "loras"
    folder.mkdir()
    for name in ("pixel-art", "watercolor", "Ink_Wash"):
        (folder / f"{name}.safetensors").write_bytes(b"")
    return folder


@pytest.fixture
def limits(lora_dir: Path) -> Limits:
    return Limits(default_size=64, lora_dir=lora_dir, control_kinds=("canny", "depth"),
                  model_labels=(("default", "tiny"),))


def error_of(text: str, limits: Limits) -> str:
    with pytest.raises(PromptError) as caught:
        parse(text, limits)
    return caught.value.message


def test_lora_flags_and_tags_become_the_request_s_loras(limits: Limits) -> None:
    request = parse("a fox, <lora:watercolor:0.6>, in snow --lora pixel-art "
                    "--lora ink_wash:-0.5 --seed 3", limits)
    assert request.prompt == "a fox, in snow"
    assert request.loras == (LoraUse(name="watercolor", weight=0.6),
                             LoraUse(name="pixel-art", weight=1.0),
                             LoraUse(name="Ink_Wash", weight=-0.5))
    assert parse("<lora:watercolor> a fox", limits).loras == (LoraUse(name="watercolor"),)
    assert parse("a fox <lora:watercolor:1>", limits).prompt == "a fox"


def test_format_request_parses_back_equal(limits: Limits) -> None:
    for text in ("a fox --lora watercolor:0.75 --lora pixel-art", "a fox <lora:Ink_Wash:2>",
                 "a fox --lora watercolor:-2 --no blur"):
        request = parse(text, limits)
        written = format_request(request, limits)
        assert parse(written, limits) == request, written
    assert format_request(parse("a fox --lora pixel-art:1.0", limits), limits) == (
        "a fox --lora pixel-art")


def test_lora_errors_say_what_is_allowed(limits: Limits) -> None:
    assert error_of("a fox --lora watercolour", limits) == (
        "Unknown LoRA 'watercolour'. Did you mean watercolor? "
        "(LoRAs: Ink_Wash, pixel-art, watercolor)")
    assert error_of("a fox --lora zzz", limits) == (
        "Unknown LoRA 'zzz'. (LoRAs: Ink_Wash, pixel-art, watercolor)")
    assert error_of("a fox --lora watercolor:3", limits).startswith(
        "--lora must be a LoRA name with an optional weight from -2 to 2")
    assert error_of("a fox <lora:watercolor:x>", limits).startswith("<lora:…> must be")
    assert error_of("a fox --lora watercolor --lora watercolor:0.5", limits) == (
        "The LoRA watercolor is given twice: give each LoRA once, with its weight "
        "(--lora NAME:0.8).")
    assert error_of("a fox --lora", limits).startswith("--lora needs a value")
    off = Limits(default_size=64)
    assert error_of("a fox --lora watercolor", off).startswith(
        "LoRAs are not enabled on this server (IMAGINE_LORA_DIR)")


def test_a_lora_dropped_in_works_without_a_restart(limits: Limits, lora_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("bots.model_flags.time.monotonic", lambda: clock[0])
    assert "Unknown LoRA" in error_of("a fox --lora new-one", limits)
    (lora_dir / "new-one.safetensors").write_bytes(b"")
    clock[0] += LISTING_SECONDS + 0.1
    assert parse("a fox --lora new-one", limits).loras == (LoraUse(name="new-one"),)


def test_the_lora_field_takes_a_list_or_commas(limits: Limits) -> None:
    expected = (LoraUse(name="watercolor", weight=0.8), LoraUse(name="pixel-art"))
    assert request_from_fields({"prompt": "a fox", "lora": "watercolor:0.8, pixel-art"},
                               limits).loras == expected
    assert request_from_fields({"prompt": "a fox", "lora": ["watercolor:0.8", "pixel-art"]},
                               limits).loras == expected
    assert request_from_fields({"prompt": "a fox", "lora": None}, limits).loras == ()


def test_cn_needs_a_control_image_and_a_configured_kind(limits: Limits) -> None:
    request, control = parse_with_control("a fox --cn canny:0.8 --seed 1", limits)
    assert control == Control("canny", 0.8) and request.control is None
    assert parse_with_control("a fox --controlnet DEPTH", limits)[1] == Control("depth", 1.0)
    assert fields_with_control({"prompt": "a fox", "cn": "depth:0.5"}, limits)[1] == (
        Control("depth", 0.5))
    assert error_of("a fox --cn canny", limits).startswith(
        "--cn canny needs a control image: attach one")
    assert error_of("a fox --cn pose", limits).startswith(
        "--cn must be a ControlNet kind (canny, depth) with an optional weight from 0 to 2")
    assert error_of("a fox --cn canny:3", limits).startswith("--cn must be")
    assert error_of("a fox --cn canny", Limits(default_size=64)) == (
        "ControlNet is not enabled on this server (IMAGINE_CONTROLNETS): leave out --cn.")
    with pytest.raises(PromptError):
        request_from_fields({"prompt": "a fox", "cn": "canny"}, limits)


def test_format_request_writes_the_control(limits: Limits) -> None:
    request, control = parse_with_control("a fox --cn canny:0.5", limits)
    assert format_request(request, limits, control) == "a fox --cn canny:0.5"
    stored = request.model_copy(update={"control": "depth", "control_image": STORED})
    assert format_request(stored, limits) == "a fox --cn depth"


def test_limits_from_settings(lora_dir: Path) -> None:
    settings = Settings(_env_file=None, lora_dir=lora_dir,  # type: ignore[call-arg]
                        controlnets={"depth": "x/depth", "canny": "x/canny"})
    limits = Limits.from_settings(settings)
    assert limits.lora_dir == lora_dir and limits.control_kinds == ("canny", "depth")


def _png_of(request: ImageRequest, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    text = png.parameters_text(request, seed, "tiny")
    return png.encode_png(Image.open(buffer), text)


def test_parameters_text_writes_loras_a1111_style_and_recall_reads_them(limits: Limits) -> None:
    request = ImageRequest(prompt="a fox", width=64, height=64, seed=5,
                           loras=(LoraUse(name="watercolor", weight=0.8),
                                  LoraUse(name="pixel-art")),
                           control="canny", control_image=STORED, control_weight=0.5)
    text = png.parameters_text(request, 5, "tiny")
    assert text.splitlines()[0] == "a fox <lora:watercolor:0.8> <lora:pixel-art:1>"
    assert "ControlNet: canny, Control weight: 0.5, Control image: " + STORED in text
    recalled = recall_png(_png_of(request, 5), limits)
    assert recalled.request == request and recalled.notes == ()
    assert recalled.text == ("a fox --seed 5 --lora watercolor:0.8 --lora pixel-art\n"
                             f"ControlNet: --cn canny:0.5 with control image {STORED}")


def test_an_image_prompt_with_a_control_image_round_trips(limits: Limits) -> None:
    request = ImageRequest(prompt="a fox", width=64, height=64, seed=5, mode="img2img",
                           source_image=STORED, strength=0.6, control="depth",
                           control_image=STORED, loras=(LoraUse(name="Ink_Wash"),))
    assert recall_png(_png_of(request, 5), limits).request == request


def test_requests_without_loras_keep_their_parameters_text() -> None:
    request = ImageRequest(prompt="a fox", width=64, height=64)
    assert png.parameters_text(request, 1, "tiny") == (
        "a fox\nSteps: 25, Sampler: Euler, CFG scale: 7.0, Seed: 1, Size: 64x64, Model: tiny")


def test_recall_notes_what_this_server_lacks(limits: Limits) -> None:
    text = ("a fox <lora:elsewhere:0.7>, <lora:watercolor:5>\nSteps: 4, Sampler: Euler, "
            "Seed: 1, Size: 64x64, ControlNet: pose, Control image: " + STORED)
    data = png.encode_png(Image.new("RGB", (8, 8)), text)
    recalled = recall_png(data, limits)
    assert recalled.request.prompt == "a fox"
    assert recalled.request.loras == (LoraUse(name="watercolor", weight=2.0),)
    assert recalled.request.control is None
    assert recalled.notes == (
        "The LoRA 'elsewhere' is not on this server (not in IMAGINE_LORA_DIR): the image is "
        "drawn without it.",
        "The weight 5 of LoRA watercolor is outside -2 to 2: 2 used.",
        "This image was guided by a ControlNet, but this server has no 'pose' ControlNet "
        "(IMAGINE_CONTROLNETS): recalled without it.")


def test_recall_of_a_weight_that_is_not_a_number(limits: Limits) -> None:
    text = "a fox <lora:watercolor:nan>, <lora:pixel-art:x>\nSteps: 4, Seed: 1, Size: 64x64"
    recalled = recall_png(png.encode_png(Image.new("RGB", (8, 8)), text), limits)
    assert recalled.request.loras == (LoraUse(name="watercolor"), LoraUse(name="pixel-art"))
    assert recalled.notes == ("The weight 'nan' of LoRA watercolor is not a number: 1 used.",
                              "The weight 'x' of LoRA pixel-art is not a number: 1 used.")
