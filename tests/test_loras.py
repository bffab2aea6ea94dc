"""LoRAs on the real tiny pipeline: active for one job only, cached, refused when they do not fit.

The promise checked byte for byte: a job without a LoRA draws exactly what a fresh pipeline
that never saw one draws, whatever jobs ran before (torch threads fixed, as hashes need).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from generator.errors import GenerationError, LoraError
from generator.library import closest, embedding_files, lora_files
from generator.request import LoraUse

SIZE = 64
STEPS = 2


@pytest.fixture(scope="module")
def pipe(tiny_model_dir: Path, one_torch_thread: None) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def fresh_images(tiny_model_dir: Path, one_torch_thread: None) -> dict[str, str]:
    """Hashes drawn by pipelines that never saw a LoRA: txt2img and img2img."""
    from diffusers import AutoPipelineForImage2Image, StableDiffusionPipeline

    fresh = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    return {"txt2img": _draw(fresh),
            "img2img": _draw(AutoPipelineForImage2Image.from_pipe(fresh), image=_source())}


def _source() -> Any:
    from PIL import Image

    return Image.new("RGB", (SIZE, SIZE), (200, 80, 40))


def _draw(pipe: Any, prompt: str = "a red fox", **inputs: Any) -> str:
    import torch

    if "image" not in inputs:
        inputs.update(width=SIZE, height=SIZE)
    image = pipe(prompt, num_inference_steps=STEPS, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(7), **inputs).images[0]
    return hashlib.sha256(image.tobytes()).hexdigest()


def _draw_with(pipe: Any, files: dict[str, Path], uses: list[LoraUse], **inputs: Any) -> str:
    from generator import loras

    with loras.applied(pipe, files, tuple(uses)):
        return _draw(pipe, **inputs)


def test_a_lora_changes_the_image_for_its_job_only(pipe: Any, tiny_lora_dir: Path,
                                                   fresh_images: dict[str, str]) -> None:
    files = lora_files(tiny_lora_dir)
    plain = _draw_with(pipe, files, [])
    styled = _draw_with(pipe, files, [LoraUse(name="tiny-style", weight=1.0)])
    half = _draw_with(pipe, files, [LoraUse(name="tiny-style", weight=0.5)])
    assert plain == fresh_images["txt2img"]
    assert len({plain, styled, half}) == 3
    assert _draw(pipe) == fresh_images["txt2img"]
    assert _draw_with(pipe, files, [LoraUse(name="tiny-style", weight=0.0)]) == fresh_images["txt2img"]
    # Cached: the second job at the same weight draws the same image again.
    assert _draw_with(pipe, files, [LoraUse(name="tiny-style", weight=1.0)]) == styled


def test_it_touches_both_the_unet_and_the_text_encoder(pipe: Any, tiny_lora_dir: Path) -> None:
    from generator import loras

    with loras.applied(pipe, lora_files(tiny_lora_dir), (LoraUse(name="tiny-style"),)):
        parts = pipe.get_list_adapters()
    assert "tiny-style" in parts["unet"] and "tiny-style" in parts["text_encoder"]


def test_it_is_loaded_once_and_stays(pipe: Any, tiny_lora_dir: Path) -> None:
    from generator import loras

    files = lora_files(tiny_lora_dir)
    uses = (LoraUse(name="tiny-style"),)
    with loras.applied(pipe, files, uses):
        first = _lora_parameter(pipe)
    with loras.applied(pipe, files, uses):
        assert _lora_parameter(pipe) is first
    assert "tiny-style" in loras.loaded(pipe)


def _lora_parameter(pipe: Any) -> Any:
    return next(p for name, p in pipe.unet.named_parameters() if "lora_A.tiny-style" in name)


def test_img2img_from_pipe_shares_the_lora_and_loses_it_after(
        pipe: Any, tiny_lora_dir: Path, fresh_images: dict[str, str]) -> None:
    from diffusers import AutoPipelineForImage2Image

    files = lora_files(tiny_lora_dir)
    img2img = AutoPipelineForImage2Image.from_pipe(pipe)
    styled = _draw_with(img2img, files, [LoraUse(name="tiny-style", weight=1.0)], image=_source())
    assert styled != fresh_images["img2img"]
    assert _draw(img2img, image=_source()) == fresh_images["img2img"]
    assert _draw(pipe) == fresh_images["txt2img"]


def test_an_exception_inside_the_block_still_disables_it(pipe: Any, tiny_lora_dir: Path,
                                                         fresh_images: dict[str, str]) -> None:
    from generator import loras

    with pytest.raises(RuntimeError, match="boom"), \
            loras.applied(pipe, lora_files(tiny_lora_dir), (LoraUse(name="tiny-style"),)):
        raise RuntimeError("boom")
    assert _draw(pipe) == fresh_images["txt2img"]


def test_a_lora_for_another_base_model_is_refused_and_leaves_nothing(
        pipe: Any, tiny_lora_dir: Path, fresh_images: dict[str, str]) -> None:
    from generator import loras

    files = lora_files(tiny_lora_dir)
    with pytest.raises(LoraError) as refused:
        _draw_with(pipe, files, [LoraUse(name="sdxl-style")])
    message = str(refused.value)
    assert message.startswith("LoRA sdxl-style does not fit model ")
    assert "another base model, e.g. SDXL" in message and "\n" not in message
    assert isinstance(refused.value, GenerationError)
    present = {a for adapters in pipe.get_list_adapters().values() for a in adapters}
    assert "sdxl-style" not in present and "sdxl-style" not in loras.loaded(pipe)
    assert _draw(pipe) == fresh_images["txt2img"]


def test_unknown_and_unreadable_loras_are_clear_errors(pipe: Any, tmp_path: Path,
                                                       fresh_images: dict[str, str]) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    files = lora_files(tmp_path)
    with pytest.raises(LoraError, match=r"^Unknown LoRA 'nope' \(LoRAs: broken\)$"):
        _draw_with(pipe, files, [LoraUse(name="nope")])
    with pytest.raises(LoraError, match=r"^LoRA broken \(broken.safetensors\) could not be loaded: "):
        _draw_with(pipe, files, [LoraUse(name="broken")])
    assert _draw(pipe) == fresh_images["txt2img"]


def test_beyond_the_bound_the_least_recently_used_is_deleted(
        pipe: Any, tiny_lora_dir: Path, tmp_path: Path, fresh_images: dict[str, str]) -> None:
    from generator import loras

    for i in range(loras.MAX_LOADED + 1):
        shutil.copy(tiny_lora_dir / "tiny-style.safetensors", tmp_path / f"copy.{i}.safetensors")
    files = lora_files(tmp_path)
    for i in range(loras.MAX_LOADED + 1):
        with loras.applied(pipe, files, (LoraUse(name=f"copy.{i}", weight=0.7),)):
            pass
    kept = loras.loaded(pipe)
    assert len(kept) == loras.MAX_LOADED
    assert loras.adapter_name("copy.0") not in kept
    assert kept[-1] == loras.adapter_name(f"copy.{loras.MAX_LOADED}")
    # Two LoRAs at once, then none: the plain image is still the fresh one.
    two = (LoraUse(name="copy.1", weight=0.5), LoraUse(name="copy.2", weight=-0.5))
    assert _draw_with(pipe, files, list(two)) != fresh_images["txt2img"]
    assert _draw(pipe) == fresh_images["txt2img"]


def test_without_uses_nothing_happens_and_too_many_are_refused(pipe: Any) -> None:
    from generator import loras

    with loras.applied(pipe, {}, ()):
        pass
    many = tuple(LoraUse(name=f"l{i}") for i in range(loras.MAX_LOADED + 1))
    with pytest.raises(LoraError, match=r"^A job may use at most 8 LoRAs; this one names 9$"), \
            loras.applied(pipe, {}, many):
        pass


def test_adapter_names_have_no_dots_and_stay_distinct() -> None:
    from generator.loras import adapter_name

    assert adapter_name("tiny-style") == "tiny-style"
    assert "." not in adapter_name("style v1.5")
    assert adapter_name("a.b") != adapter_name("a_b") != adapter_name("a b")


def test_library_lists_the_folders(tmp_path: Path) -> None:
    for name in ("b.safetensors", "a.safetensors", "a.txt", ".hidden.safetensors", "x.pt", "x.bin",
                 "y.bin"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.safetensors").mkdir()
    assert lora_files(tmp_path) == {"a": tmp_path / "a.safetensors", "b": tmp_path / "b.safetensors"}
    assert list(embedding_files(tmp_path)) == ["a", "b", "x", "y"]
    assert embedding_files(tmp_path)["x"] == tmp_path / "x.pt"
    assert lora_files(None) == {} and lora_files(tmp_path / "missing") == {}


def test_closest_ignores_case() -> None:
    names = ["Tiny-Style", "sdxl-style", "watercolour"]
    assert closest("tiny-styl", names)[0] == "Tiny-Style"
    assert closest("WATERCOLOR", names) == ["watercolour"]
    assert closest("zzzz", names) == []


def test_the_engine_draws_loras_and_embeddings_for_their_job_only(
        tiny_model_dir: Path, tiny_lora_dir: Path, tiny_embeddings_dir: Path) -> None:
    from generator.engine import Engine
    from generator.request import ImageRequest

    engine = Engine({"default": str(tiny_model_dir)}, device="cpu", torch_threads=1,
                    lora_dir=tiny_lora_dir, embeddings_dir=tiny_embeddings_dir)
    fast = dict(prompt="a red fox", seed=5, width=SIZE, height=SIZE, num_inference_steps=STEPS)

    def png(**changes: Any) -> bytes:
        return engine.generate(ImageRequest(**{**fast, **changes}))[0].png

    plain = png()
    styled = png(loras=(LoraUse(name="tiny-style", weight=0.8),))
    token = png(prompt="a red fox, tiny-token")
    with pytest.raises(LoraError, match="does not fit model"):
        png(loras=(LoraUse(name="sdxl-style"),))
    assert len({plain, styled, token}) == 3
    assert png() == plain


def test_the_refusal_names_the_base_model_when_the_file_tells(pipe: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from generator import loras

    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{key}.lora_down.weight": torch.ones(4, 2048), f"{key}.lora_up.weight": torch.ones(64, 4),
               f"{key}.alpha": torch.tensor(4.0)}, str(tmp_path / "xl-kohya.safetensors"))
    refusal = r"^LoRA xl-kohya does not fit model tiny \(it was made for SDXL\)$"
    with pytest.raises(LoraError, match=refusal), \
            loras.applied(pipe, lora_files(tmp_path), (LoraUse(name="xl-kohya"),)):
        pass
    assert "xl-kohya" not in loras.loaded(pipe)


def test_a_controlnet_variant_shares_the_loaded_lora(pipe: Any, tiny_lora_dir: Path,
                                                     tiny_controlnets: dict[str, Path]) -> None:
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from generator import loras

    files = lora_files(tiny_lora_dir)
    with loras.applied(pipe, files, (LoraUse(name="tiny-style"),)):
        pass
    controlnet = ControlNetModel.from_pretrained(tiny_controlnets["canny"])
    variant = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=controlnet)
    plain = _draw(variant, image=_source(), width=SIZE, height=SIZE)
    styled = _draw_with(variant, files, [LoraUse(name="tiny-style")], image=_source(),
                        width=SIZE, height=SIZE)
    assert styled != plain
    assert _draw(variant, image=_source(), width=SIZE, height=SIZE) == plain
    assert loras.loaded(variant) == loras.loaded(pipe)


def test_an_sdxl_lora_and_embedding_on_a_tiny_sdxl(tiny_lora_dir: Path, tmp_path: Path,
                                                   one_torch_thread: None) -> None:
    import torch
    from safetensors.torch import save_file

    from generator import embeddings
    from generator.tiny_adapters import build_tiny_sdxl_pipeline

    xl = build_tiny_sdxl_pipeline()
    files = lora_files(tiny_lora_dir)
    plain = _draw(xl)
    styled = _draw_with(xl, files, [LoraUse(name="sdxl-style", weight=0.9)])
    assert styled != plain and _draw(xl) == plain
    with pytest.raises(LoraError, match="^LoRA tiny-style does not fit model "):
        _draw_with(xl, files, [LoraUse(name="tiny-style")])
    assert _draw(xl) == plain
    save_file({"clip_l": torch.ones(2, 32), "clip_g": torch.ones(2, 32)},
              str(tmp_path / "xl-token.safetensors"))
    save_file({"emb_params": torch.ones(1, 32)}, str(tmp_path / "sd-token.safetensors"))
    as_text = _draw(xl, "a red fox, xl-token")
    embeddings.ensure_loaded(xl, embedding_files(tmp_path), ["a red fox, xl-token"])
    assert "xl-token_1" in xl.tokenizer_2.added_tokens_encoder
    assert _draw(xl, "a red fox, xl-token") != as_text and _draw(xl) == plain
    with pytest.raises(GenerationError, match=r"^Embedding sd-token does not fit model .*: it has no clip_l"):
        embeddings.ensure_loaded(xl, embedding_files(tmp_path), ["sd-token"])
    save_file({"clip_l": torch.ones(1, 32), "clip_g": torch.ones(1, 48)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(GenerationError, match=r"^Embedding odd does not fit model .*: its vectors are not "
                                              r"32 and 32 wide"):
        embeddings.ensure_loaded(xl, embedding_files(tmp_path), ["odd"])
    assert "odd" not in xl.tokenizer.added_tokens_encoder
