"""Recall: the request inside a PNG's A1111 `parameters` text, ours (every mode round-trips)
or another tool's (A1111, Forge, ComfyUI savers), brought within this server's limits with
a note for each change; and the Run again store in a real Redis."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from bots.errors import PromptError
from bots.grammar import parse
from bots.limits import Limits
from bots.recall import NoParameters, recall_png
from generator.png import encode_png, model_label, parameters_text
from generator.request import SAMPLERS, ImageRequest
from settings import Settings
from tasks.core.recalls import RecallStore
from tasks.names import RECALL_KEY

LIMITS = Limits(models=("default", "sdxl"),
                model_labels=(("default", "tiny"), ("sdxl", "sd_xl_base_1.0")))
SOURCE, MASK = "0123456789abcdef" * 2, "fedcba9876543210" * 2
BASE = ImageRequest(prompt="a red fox, snow: 1.2", negative_prompt="text, blur", width=640,
                    height=384, seed=7, num_inference_steps=3, guidance_scale=5.5,
                    sampler="dpm++2m_karras", model="sdxl")
PIXELS = Image.new("RGB", (8, 8), (200, 30, 10))


def our_png(request: ImageRequest, model_label: str = "sd_xl_base_1.0") -> bytes:
    return encode_png(PIXELS, parameters_text(request, request.seed or 0, model_label))


def png_with_chunk(kind: bytes, body: bytes) -> bytes:
    """A plain PNG with one more chunk just before IEND (after the pixels), as some tools
    write their text."""
    out = io.BytesIO()
    PIXELS.save(out, "PNG")
    data = out.getvalue()
    chunk = struct.pack(">I", len(body)) + kind + body
    chunk += struct.pack(">I", zlib.crc32(kind + body))
    return data[:-12] + chunk + data[-12:]


def a1111_png(text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    out = io.BytesIO()
    PIXELS.save(out, "PNG", pnginfo=info)
    return out.getvalue()


# --- our own PNGs, every mode ------------------------------------------------------------


OPERATIONS = {
    "txt2img": BASE,
    "img2img": BASE.from_image(SOURCE, 640, 384, strength=0.45),
    "upscale": BASE.upscaled(SOURCE, 7, 1280, 768, 2),
    "upscale_creative": BASE.upscaled(SOURCE, 7, 1920, 1152, 3, creative=True),
    "zoom_out": BASE.zoomed_out(SOURCE, 7, 960, 576, 1.5),
    "pan": BASE.panned(SOURCE, 7, 960, 384, "left"),
    "inpaint": BASE.inpainted(SOURCE, MASK, 7, 640, 384, prompt="a blue hat"),
}


@pytest.mark.parametrize("mode", OPERATIONS)
def test_our_png_of_every_mode_recalls_the_same_request(mode: str) -> None:
    request = OPERATIONS[mode]
    recalled = recall_png(our_png(request), LIMITS)
    assert recalled.request == request
    assert recalled.notes == ()
    first_line, *rest = recalled.text.split("\n")
    if mode == "txt2img":
        assert parse(recalled.text, LIMITS) == request and rest == []
    else:
        # The first line is a prompt someone can paste; the second names the operation.
        assert parse(first_line, LIMITS).prompt == request.prompt
        assert rest[0].startswith("Operation: ") and SOURCE in rest[0]


def test_an_operation_records_what_it_did_and_its_images() -> None:
    text = parameters_text(OPERATIONS["zoom_out"], 7, "tiny")
    assert text.endswith(", Model: tiny, Denoising strength: 1.0, Operation: zoom_out, "
                         f"Zoom factor: 1.5, Source image: {SOURCE}")
    assert "Pan: left" in parameters_text(OPERATIONS["pan"], 7, "tiny")
    assert "Upscale factor: 3" in parameters_text(OPERATIONS["upscale_creative"], 7, "tiny")
    assert f"Mask image: {MASK}" in parameters_text(OPERATIONS["inpaint"], 7, "tiny")


@settings(max_examples=60, deadline=None)
@given(prompt=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60),
       negative=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
       seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 50),
       cfg=st.floats(0, 30, allow_nan=False), sampler=st.sampled_from(SAMPLERS))
def test_any_prompt_the_grammar_accepts_round_trips(prompt: str, negative: str, seed: int,
                                                    steps: int, cfg: float, sampler: str) -> None:
    words = [w for w in prompt.split() if not w.startswith(("--", "\u2013", "\u2014"))]
    no = " ".join(w for w in negative.split() if not w.startswith(("--", "\u2013", "\u2014")))
    try:
        request = parse(" ".join(words) + (f" --no {no}" if no.strip(" ,") else ""), LIMITS)
    except PromptError:
        return  # not a prompt the grammar takes (empty), so no image could carry it
    request = request.model_copy(update={"seed": seed, "num_inference_steps": steps,
                                         "guidance_scale": cfg, "sampler": sampler})
    recalled = recall_png(our_png(request, "tiny"), LIMITS)
    assert recalled.request == request.model_copy(update={"model": "default"})
    assert parse(recalled.text, LIMITS) == recalled.request


# --- other tools' PNGs -------------------------------------------------------------------


A1111 = (
    "masterpiece, a castle on a hill,\n(golden hour:1.2), <lora:detail:0.8>\n"
    "Negative prompt: lowres, bad hands,\nwatermark\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
    'Lora hashes: "detail: 1a2b3c, other: 4d5e6f", Version: v1.10.1'
)


def test_an_a1111_png_with_schedule_type_quotes_and_a_negative_over_lines() -> None:
    recalled = recall_png(a1111_png(A1111), LIMITS)
    request = recalled.request
    assert request.prompt == "masterpiece, a castle on a hill, (golden hour:1.2)"
    assert request.negative_prompt == "lowres, bad hands, watermark"
    assert (request.sampler, request.num_inference_steps, request.guidance_scale) == (
        "dpm++2m_karras", 30, 6.5)
    assert (request.seed, request.width, request.height, request.mode) == (
        1234567, 512, 768, "txt2img")
    assert recalled.parameters["Lora hashes"] == "detail: 1a2b3c, other: 4d5e6f"
    assert recalled.parameters["Version"] == "v1.10.1"
    assert recalled.parameters["Negative prompt"] == "lowres, bad hands,\nwatermark"
    assert recalled.notes == ("The LoRA 'detail' is not on this server (LoRAs are off here): "
                              "the image is drawn without it.",
                              "Model 'v1-5-pruned-emaonly' is not on this server: the default "
                              "model is used.")
    assert parse(recalled.text, LIMITS) == request


def test_a_comfyui_style_png_after_the_pixels_compressed() -> None:
    text = ("a lighthouse\nSteps: 20, Sampler: euler_ancestral, Scheduler: karras, "
            "CFG scale: 8, Seed: 42, Size: 768x512, Model: SD_XL_BASE_1.0")
    body = b"parameters\0" + b"\1\0" + b"\0" + b"\0" + zlib.compress(text.encode())
    recalled = recall_png(png_with_chunk(b"iTXt", body), LIMITS)
    assert (recalled.request.sampler, recalled.request.model) == ("euler_a", "sdxl")
    assert recalled.notes == ("The Karras schedule is not available with Euler a here: its "
                              "usual schedule is used.",)


def test_values_beyond_this_server_are_brought_within_it_with_notes() -> None:
    text = ("a --ar 16:9 fox \u2014no snow\nSteps: 150, Sampler: DPM++ 2M SDE, CFG scale: 45, "
            "Seed: 1099511627776, Size: 2048x2048, Model: sdxl")
    recalled = recall_png(a1111_png(text), LIMITS)
    request = recalled.request
    assert request.prompt == "a -ar 16:9 fox -no snow"
    assert (request.num_inference_steps, request.guidance_scale) == (LIMITS.max_steps, 30.0)
    assert request.width * request.height <= LIMITS.max_pixels and request.width == request.height
    assert request.seed == 1099511627776 % 2**32 and request.sampler == LIMITS.default_sampler
    assert len(recalled.notes) == 6
    assert any("IMAGINE_MAX_STEPS" in note for note in recalled.notes)
    assert any("IMAGINE_MAX_PIXELS" in note for note in recalled.notes)
    assert parse(recalled.text, LIMITS) == request


def test_values_that_are_not_values_get_the_defaults_with_notes() -> None:
    text = ("a fox\nSteps: twelve, Sampler: Euler, CFG scale: nan, Seed: \u00b2, Size: 0x64, "
            "Model: ")
    recalled = recall_png(a1111_png(text), LIMITS)
    request = recalled.request
    assert (request.num_inference_steps, request.guidance_scale) == (
        LIMITS.default_steps, LIMITS.default_cfg)
    assert request.seed is None and (request.width, request.height) == LIMITS.default_dims
    assert len(recalled.notes) == 4 and all("\n" not in note for note in recalled.notes)


def test_an_operation_that_does_not_name_its_source_is_recalled_as_a_prompt() -> None:
    text = ("a fox\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, "
            "Denoising strength: 1.0, Operation: zoom_out, Zoom factor: 2")
    recalled = recall_png(a1111_png(text), LIMITS)
    assert recalled.request.mode == "txt2img"
    assert recalled.notes == ("This image was made by an operation, but it does not name its "
                              "source image: recalled as a text prompt.",)


def test_an_a1111_jpeg_or_webp_carries_the_text_in_exif() -> None:
    for kind, encoding in (("JPEG", "utf-16-be"), ("WEBP", "utf-16-le")):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111.encode(encoding)
        out = io.BytesIO()
        PIXELS.save(out, kind, exif=exif)
        recalled = recall_png(out.getvalue(), LIMITS)
        assert recalled.request.negative_prompt == "lowres, bad hands, watermark"
        assert recalled.request.seed == 1234567


def test_vary_region_of_an_upscaled_image_keeps_its_size() -> None:
    # The inpainted result has its source's size, which an upscale may have made large.
    big = BASE.inpainted(SOURCE, MASK, 7, 2048, 1536)
    assert recall_png(our_png(big), LIMITS).request == big
    huge = BASE.upscaled(SOURCE, 7, 8192, 8192, 4)
    recalled = recall_png(our_png(huge), LIMITS)
    assert (recalled.request.width, recalled.request.height) == (4096, 4096)
    assert recalled.notes == ("Size 8192x8192 is over this server's limit of 16777216 pixels "
                              "(IMAGINE_MAX_UPSCALE_PIXELS): 4096x4096 used.",)


def test_an_operation_the_engine_ran_recalls_the_request_it_ran(tiny_model_dir: Path) -> None:
    from generator.engine import Engine

    engine = Engine({"default": str(tiny_model_dir)}, device="cpu", torch_threads=1,
                    max_pixels=64 * 64)
    source = Image.new("RGB", (32, 32), (90, 120, 200))
    request = ImageRequest(prompt="a lighthouse", width=32, height=32, seed=3,
                           num_inference_steps=1).panned(SOURCE, 3, 48, 32, "left")
    result = engine.generate(request, load_image=lambda name: source)[0]
    limits = Limits(model_labels=(("default", model_label(str(tiny_model_dir))),))
    assert recall_png(result.png, limits).request == request


# --- nothing to recall -------------------------------------------------------------------


def test_a_png_without_parameters_says_so() -> None:
    with pytest.raises(NoParameters, match=r"^This PNG carries no generation parameters"):
        recall_png(png_with_chunk(b"tEXt", b"Software\0paint"), LIMITS)
    with pytest.raises(NoParameters, match="ComfyUI workflow"):
        recall_png(png_with_chunk(b"tEXt", b'workflow\0{"nodes": []}'), LIMITS)
    with pytest.raises(NoParameters, match="empty prompt"):
        recall_png(a1111_png("\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1"), LIMITS)


def test_a_jpeg_and_bytes_that_are_no_image() -> None:
    jpeg = io.BytesIO()
    PIXELS.save(jpeg, "JPEG")
    with pytest.raises(NoParameters, match="This JPEG image carries no generation parameters"):
        recall_png(jpeg.getvalue(), LIMITS)
    with pytest.raises(PromptError, match="not an image") as caught:
        recall_png(b"GIF? no, just text", LIMITS)
    assert not isinstance(caught.value, NoParameters)


def test_limits_from_settings_know_each_models_label() -> None:
    config = Settings(  # type: ignore[call-arg]  # pydantic-settings' init-only option
        _env_file=None, model="/models/tiny/", models={"xl": "/m/sd_xl_base_1.0.safetensors"})
    limits = Limits.from_settings(config)
    assert limits.model_labels == (("default", "tiny"), ("xl", "sd_xl_base_1.0"))
    assert recall_png(our_png(BASE), limits).request.model == "xl"


# --- the Run again store -----------------------------------------------------------------


def test_recall_store_keeps_a_request_under_an_unguessable_id(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RecallStore(client, ttl=600)
    first, second = store.save(OPERATIONS["pan"]), store.save(BASE)
    assert len(first) == 24 and int(first, 16) >= 0 and first != second
    assert store.find(first) == OPERATIONS["pan"] and store.find(second) == BASE
    assert 0 < client.ttl(RECALL_KEY.format(first)) <= 600
    assert store.find("0" * 24) is None and store.find("../" + first) is None
    client.set(RECALL_KEY.format("1" * 24), "{not a request")
    assert store.find("1" * 24) is None
