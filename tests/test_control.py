"""ControlNet on the real tiny pipeline: maps, controlled pipelines, configuration errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from generator.control import ControlNets, canny_map, control_inputs, controlled, family_of
from generator.errors import ModelError
from settings.errors import ConfigError

SIZE = 64


@pytest.fixture(scope="module")
def pipe(tiny_model_dir: Path):  # noqa: ANN201
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(2)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def controls(tiny_controlnets: dict[str, Path]) -> ControlNets:
    return ControlNets({kind: str(path) for kind, path in tiny_controlnets.items()}, {}, "cpu", torch.float32)


def edge_image(width: int = SIZE, height: int = SIZE) -> Image.Image:
    """Black with a white square: four sharp edges."""
    image = Image.new("RGB", (width, height), "black")
    ImageDraw.Draw(image).rectangle((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill="white")
    return image


def draw(pipe, seed: int = 7, **inputs) -> np.ndarray:  # noqa: ANN001
    image = pipe("a red house", num_inference_steps=2, guidance_scale=5.0,
                 generator=torch.Generator("cpu").manual_seed(seed), **inputs).images[0]
    return np.asarray(image, dtype=np.int16)


def test_canny_map_of_a_solid_image_is_black_and_of_an_edge_white() -> None:
    solid = canny_map(Image.new("RGB", (SIZE, SIZE), (120, 40, 200)))
    assert solid.mode == "RGB" and solid.size == (SIZE, SIZE)
    assert not np.asarray(solid).any()
    edges = np.asarray(canny_map(edge_image()))
    assert set(np.unique(edges)) == {0, 255}
    assert (edges[..., 0] == edges[..., 1]).all() and (edges[..., 1] == edges[..., 2]).all()
    # The square's outline, not its inside.
    assert edges[SIZE // 2, SIZE // 2].sum() == 0
    assert edges[:, SIZE // 4 - 1 : SIZE // 4 + 1].any()


def test_control_map_is_target_sized_and_not_squashed(controls: ControlNets) -> None:
    wide = Image.new("RGB", (200, 100), "blue")
    ImageDraw.Draw(wide).rectangle((0, 0, 49, 99), fill="red")  # the left quarter, cropped away
    ready = controls.control_map("pose", wide, 48, 64)
    assert ready.size == (48, 64) and ready.mode == "RGB"
    assert ready.getpixel((0, 32)) == (0, 0, 255)
    assert controls.control_map("canny", edge_image(128, 128), 64, 32).size == (64, 32)


def test_depth_annotator_draws_the_map(tiny_depth_estimator: Path) -> None:
    controls = ControlNets({}, {"depth": str(tiny_depth_estimator)}, "cpu", torch.float32)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8))
    depth = controls.control_map("depth", photo, 64, 48)
    assert depth.size == (64, 48) and depth.mode == "RGB"
    pixels = np.asarray(depth)
    assert (pixels[..., 0] == pixels[..., 2]).all() and pixels.std() > 0
    # Without an annotator, depth takes the image itself as the map.
    plain = ControlNets({}, {}, "cpu", torch.float32).control_map("depth", photo, 70, 90)
    assert np.array_equal(np.asarray(plain), np.asarray(photo))


def test_canny_job_steers_the_image_and_is_deterministic(pipe, controls: ControlNets) -> None:  # noqa: ANN001
    assert family_of(pipe) == "sd15"
    model = controls.model("canny", "sd15")
    assert controls.model("canny", "sd15") is model
    steered = controlled(pipe, model)
    assert type(steered).__name__ == "StableDiffusionControlNetPipeline"
    assert steered.unet is pipe.unet and steered.vae is pipe.vae
    control = controls.control_map("canny", edge_image(), SIZE, SIZE)
    inputs = control_inputs(steered, control, 1.0)
    assert set(inputs) == {"image", "controlnet_conditioning_scale"}
    plain = draw(pipe, width=SIZE, height=SIZE)
    first = draw(steered, **inputs)
    assert np.abs(first - plain).mean() > 1.0
    assert np.array_equal(first, draw(controlled(pipe, model), **inputs))
    # Another map, another image: the ControlNet reads the map, not just its presence.
    other = control_inputs(steered, controls.control_map("canny", edge_image().rotate(45), SIZE, SIZE), 1.0)
    assert not np.array_equal(first, draw(steered, **other))


def test_weight_zero_draws_as_without_controlnet(pipe, controls: ControlNets) -> None:  # noqa: ANN001
    steered = controlled(pipe, controls.model("depth", "sd15"))
    inputs = control_inputs(steered, edge_image(), 0.0)
    # Scale 0 multiplies every ControlNet residual by zero before the UNet adds it: exact.
    assert np.array_equal(draw(steered, **inputs), draw(pipe, width=SIZE, height=SIZE))
    half = draw(steered, **control_inputs(steered, edge_image(), 0.5))
    full = draw(steered, **control_inputs(steered, edge_image(), 1.0))
    assert not np.array_equal(half, full)


def test_img2img_with_controlnet(pipe, controls: ControlNets) -> None:  # noqa: ANN001
    from diffusers import AutoPipelineForImage2Image

    image2image = AutoPipelineForImage2Image.from_pipe(pipe)
    steered = controlled(image2image, controls.model("canny", "sd15"))
    assert type(steered).__name__ == "StableDiffusionControlNetImg2ImgPipeline"
    control = controls.control_map("canny", edge_image(), SIZE, SIZE)
    inputs = control_inputs(steered, control, 1.0)
    assert set(inputs) == {"control_image", "controlnet_conditioning_scale"}
    source = Image.new("RGB", (SIZE, SIZE), (200, 120, 30))
    with_control = draw(steered, image=source, strength=0.6, **inputs)
    without = draw(image2image, image=source, strength=0.6)
    assert with_control.shape == (SIZE, SIZE, 3)
    assert np.abs(with_control - without).mean() > 1.0


def test_float16_weights_stay_float16(tiny_model_dir: Path, tiny_controlnets: dict[str, Path]) -> None:
    from diffusers import StableDiffusionPipeline

    half = StableDiffusionPipeline.from_pretrained(tiny_model_dir, torch_dtype=torch.float16)
    controls = ControlNets({"canny": str(tiny_controlnets["canny"])}, {}, "cpu", torch.float16)
    model = controls.model("canny", "sd15")
    steered = controlled(half, model)
    # diffusers' own Pipeline.from_pipe would cast the shared weights to float32 in place.
    assert half.unet.dtype == steered.unet.dtype == model.dtype == torch.float16


def test_unconfigured_kind_or_family_says_what_to_set(tiny_controlnets: dict[str, Path]) -> None:
    controls = ControlNets({"canny": {"sd15": str(tiny_controlnets["canny"])}}, {}, "cpu", torch.float32)
    assert controls.kinds() == ("canny",)
    with pytest.raises(ModelError) as sdxl:
        controls.model("canny", "sdxl")
    message = str(sdxl.value)
    assert message.startswith("no ControlNet for canny on sdxl models (it is set for sd15 only): set ")
    assert 'IMAGINE_CONTROLNETS=\'{"canny": {"sdxl": "diffusers/controlnet-canny-sdxl-1.0"}}\'' in message
    assert "\n" not in message
    with pytest.raises(ModelError, match="^no ControlNet for depth on sd15 models: set IMAGINE_CONTROLNETS="):
        controls.model("depth", "sd15")


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown kind 'openpose': use canny, depth"):
        ControlNets({"openpose": "x/y"}, {}, "cpu", torch.float32)
    with pytest.raises(ConfigError, match="unknown model families sd9: use sd15"):
        ControlNets({"canny": {"sd9": "x/y"}}, {}, "cpu", torch.float32)
    with pytest.raises(ConfigError, match="annotators exist for depth only"):
        ControlNets({}, {"canny": "x/y"}, "cpu", torch.float32)
    sources = {"canny": str(tmp_path / "missing"), "depth": str(tmp_path),
               "tile": "nobody/no-such-controlnet", "pose": str(tmp_path / "cn.safetensors")}
    controls = ControlNets(sources, {}, "cpu", torch.float32)
    with pytest.raises(ModelError, match="is not a folder: fix IMAGINE_CONTROLNETS"):
        controls.model("canny", "sd15")
    with pytest.raises(ModelError, match="is a folder without config.json"):
        controls.model("depth", "sd15")
    with pytest.raises(ModelError, match="is a single file: use a diffusers folder"):
        controls.model("pose", "sd15")
    # HF_HUB_OFFLINE=1 (tests/fixtures_model.py): a hub id not in the cache.
    with pytest.raises(ModelError, match="could not load the tile ControlNet 'nobody/no-such-controlnet' .*"
                       "not in the local Hugging Face cache .*download it"):
        controls.model("tile", "sd15")


def test_controlnet_of_another_base_model_is_refused(pipe) -> None:  # noqa: ANN001
    from diffusers import ControlNetModel

    foreign = ControlNetModel(block_out_channels=(32, 64),
                              down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                              cross_attention_dim=48, attention_head_dim=8, norm_num_groups=32,
                              layers_per_block=1)
    with pytest.raises(ModelError, match="does not fit this model .cross_attention_dim 48 against 32"):
        controlled(pipe, foreign)


def test_family_of_by_class_and_components(pipe) -> None:  # noqa: ANN001
    from diffusers import StableDiffusionPipeline, StableDiffusionXLImg2ImgPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def encoder(cls, hidden: int):  # noqa: ANN001, ANN202
        return cls(CLIPTextConfig(vocab_size=1000, hidden_size=hidden, intermediate_size=8,
                                  num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=77))

    parts = dict(pipe.components)
    sd21 = StableDiffusionPipeline(**{**parts, "text_encoder": encoder(CLIPTextModel, 1024)})
    assert family_of(sd21) == "sd21"
    sdxl = StableDiffusionXLImg2ImgPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, text_encoder_2=encoder(CLIPTextModelWithProjection, 32),
        tokenizer=pipe.tokenizer, tokenizer_2=pipe.tokenizer, unet=pipe.unet, scheduler=pipe.scheduler)
    assert family_of(sdxl) == "sdxl"
