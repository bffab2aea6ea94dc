"""Live previews on the generator side: IMAGINE_PREVIEW_DECODER, the tiny TAESD through the
same preview_maker path a worker uses, the linear fallback, and the JPEG kept in Redis."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy
import pytest
import torch
from PIL import Image

from generator.previews import (
    PREVIEW_SIDE,
    PreviewMaker,
    TaesdPreviewMaker,
    parse_decoders,
    preview_maker,
)
from generator.tiny_model import TAESD_FOLDER
from settings import Settings
from settings.errors import ConfigError
from tasks.core.connection import redis_client
from tasks.core.previews import PreviewStore, encode_preview
from tasks.names import PREVIEW_KEY


def test_decoders_parse() -> None:
    assert parse_decoders(None) == {} == parse_decoders("  ")
    assert parse_decoders("madebyollin/taesd") == {"*": "madebyollin/taesd"}
    assert parse_decoders(" sd15=/m/taesd , SDXL=madebyollin/taesdxl") == {
        "sd15": "/m/taesd", "sdxl": "madebyollin/taesdxl"}
    assert parse_decoders("*=/m/taesd,sdxl=/m/xl") == {"*": "/m/taesd", "sdxl": "/m/xl"}


@pytest.mark.parametrize(("value", "says"), [
    ("sd15=a,b", "'b' is not family=source"),
    ("sd99=/m/taesd", "unknown family 'sd99'"),
    ("sd15=", "is not family=source"),
    ("a,b", "one TAESD source for every family"),
    ("sd15=a,sd15=b", "given twice"),
])
def test_garbage_names_the_setting(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match="IMAGINE_PREVIEW_DECODER") as caught:
        parse_decoders(value)
    assert says in caught.value.message


def test_tiny_taesd_decodes_a_latent_batch(tiny_model_dir: Path) -> None:
    taesd = tiny_model_dir / TAESD_FOLDER
    assert (taesd / "config.json").is_file()
    # The tiny model itself still loads as before (diffusers ignores the extra folder).
    maker = preview_maker("sd15", parse_decoders(f"sd15={taesd}"), "cpu", torch.float32)
    assert isinstance(maker, TaesdPreviewMaker) and maker.channels == 4
    generator = torch.Generator().manual_seed(0)
    # Two rows of a 512×384 image's latents: shrunk before decoding, so ≤ 256 px a side.
    images = maker.decode(torch.randn(2, 4, 48, 64, generator=generator))
    assert [image.size for image in images] == [(PREVIEW_SIDE, 192)] * 2
    assert all(image.mode == "RGB" for image in images)
    # A small latent is decoded at TAESD's own 8× (64 px) and brought to the preview side.
    assert maker.decode(torch.randn(1, 4, 8, 8, generator=generator))[0].size == (256, 256)


def test_the_star_decoder_serves_every_family(tiny_model_dir: Path) -> None:
    decoders = {"*": str(tiny_model_dir / TAESD_FOLDER)}
    assert isinstance(preview_maker("sdxl", decoders, "cpu", None), TaesdPreviewMaker)
    linear = preview_maker("sdxl", {"sd15": str(tiny_model_dir / TAESD_FOLDER)}, "cpu", None)
    assert type(linear) is PreviewMaker


def test_a_decoder_that_cannot_load_says_what_to_fix_and_falls_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="generator.previews"):
        maker = preview_maker("sd15", {"*": str(tmp_path / "missing")}, "cpu", None)
    assert type(maker) is PreviewMaker
    message = caplog.text
    assert "IMAGINE_PREVIEW_DECODER" in message and "missing" in message
    assert "AutoencoderTiny" in message and "linear" in message
    assert maker.decode(torch.zeros(1, 4, 8, 8))[0].size == (256, 256)


def test_wrong_latent_channels_fall_back_to_linear_once(
        tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    maker = preview_maker("sd3", {"*": str(tiny_model_dir / TAESD_FOLDER)}, "cpu", None)
    with caplog.at_level(logging.WARNING, logger="generator.previews"):
        for _ in range(2):
            assert maker.decode(torch.randn(1, 16, 8, 8))[0].size == (256, 256)
    assert caplog.text.count("takes 4 latent channels") == 1


def test_linear_previews_per_family() -> None:
    latents = torch.zeros(1, 4, 16, 8)
    latents[:, 0] = 2.0  # SD's first latent channel is mostly brightness
    sd = PreviewMaker("sd15").decode(latents)[0]
    xl = PreviewMaker("sdxl").decode(latents)[0]
    assert sd.size == xl.size == (128, 256)
    assert sd.getpixel((64, 128)) != xl.getpixel((64, 128))  # different factors
    assert numpy.asarray(sd).min() > 170  # bright everywhere
    # Another latent format (16 channels): normalised first channels, still a picture.
    other = PreviewMaker("flux").decode(torch.randn(2, 16, 8, 8))
    assert [image.size for image in other] == [(256, 256)] * 2


def test_preview_jpeg_is_small_and_kept_with_a_ttl(settings: Settings) -> None:
    image = Image.effect_noise((256, 192), 60).convert("RGB")
    jpeg = encode_preview(image)
    assert jpeg.startswith(b"\xff\xd8") and len(jpeg) < 40_000
    assert Image.open(io.BytesIO(jpeg)).size == (256, 192)
    big = encode_preview(Image.new("RGBA", (1024, 512), (10, 200, 30, 255)))
    assert Image.open(io.BytesIO(big)).size == (256, 128)
    client = redis_client(settings)
    store = PreviewStore(client, 90)
    store.put("job-a", jpeg)
    assert store.get("job-a") == jpeg and 0 < client.ttl(PREVIEW_KEY.format("job-a")) <= 90
    store.drop("job-a")
    assert store.get("job-a") is None


def test_preview_cost_bench_measures_both_decoders(tiny_model_dir: Path) -> None:
    from bench.preview_cost import preview_cost

    cost = preview_cost(tiny_model_dir, size=64, steps=4, rounds=2)
    assert cost.linear_ms > 0 and cost.taesd_ms > 0 and cost.step_ms > 0
    assert cost.line().startswith("preview_linear_ms=") and " step_ms=" in cost.line()
