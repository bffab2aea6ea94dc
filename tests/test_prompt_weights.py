"""Prompt weights and long prompts: A1111 syntax read right, and compel's embeddings drawn by the
real tiny pipelines (SD 1.x-style from `tiny_model_dir`, and a tiny SDXL built here)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from generator.a1111_syntax import Piece, PromptSyntaxError, is_plain, parse, plain_text
from generator.prompt_weights import CLIP_WINDOW, encode, token_count

# Common words that are one CLIP token each, so token counts are easy to reason about.
WORDS = ["red", "blue", "cat", "dog", "tree", "house", "sky", "sea", "boat", "moon"]


def words(count: int, start: int = 0) -> str:
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(count))


# --- the syntax ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a (cat) dog", ((Piece("a "), Piece("cat", 1.1), Piece(" dog")),)),
        ("((cat))", ((Piece("cat", 1.1 * 1.1),),)),
        ("[cat]", ((Piece("cat", 1 / 1.1),),)),
        ("(cat:1.3), dog", ((Piece("cat", 1.3), Piece(", dog")),)),
        ("(a [b] c:1.5)", ((Piece("a ", 1.5), Piece("b", 1.5 / 1.1), Piece(" c", 1.5)),)),
        ("(cat: 0.5 )", ((Piece("cat", 0.5),),)),
        (r"a \(cat\) \[x\] \\", ((Piece("a (cat) [x] \\"),),)),
        ("x BREAK y", ((Piece("x"),), (Piece("y"),))),
        ("(a BREAK b)", ((Piece("a", 1.1),), (Piece("b", 1.1),))),
        ("BREAKfast", ((Piece("BREAKfast"),),)),
        ("(masterpiece, best", ((Piece("masterpiece, best", 1.1),),)),  # never closed: still weighted
        ("stray) ] ratio 16:9)", ((Piece("stray) ] ratio 16:9)"),),)),  # nothing open: plain text
        ("close-up \"sign\" cat+", ((Piece("close-up \"sign\" cat+"),),)),  # compel's syntax is text here
    ],
)
def test_a1111_syntax_is_read_into_weighted_pieces(prompt: str, expected: tuple) -> None:
    chunks = parse(prompt)
    assert [[p.text for p in c] for c in chunks] == [[p.text for p in c] for c in expected]
    weights = [p.weight for c in chunks for p in c]
    assert weights == pytest.approx([p.weight for c in expected for p in c])


def test_plain_prompts_are_recognised_and_syntax_is_stripped_for_text() -> None:
    assert is_plain("a red cat, 16:9)", parse("a red cat, 16:9)"))
    assert is_plain("", parse(""))
    assert not is_plain(r"a \(cat\)", parse(r"a \(cat\)"))
    assert not is_plain("(cat:1)", parse("(cat:1)"))
    assert plain_text(parse("a (red:1.3) [cat] BREAK ((dog))")) == "a red cat dog"


@pytest.mark.parametrize("prompt", ["(cat:-1)", "(cat:3.5)", "a ((dog:12)) b"])
def test_a_weight_out_of_range_is_refused_in_one_line(prompt: str) -> None:
    with pytest.raises(PromptSyntaxError) as raised:
        parse(prompt)
    message = str(raised.value)
    assert "\n" not in message and "from 0 to 3" in message and "(red hat:1.3)" in message


# --- SD 1.x-style pipeline -------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread: None) -> None:
    """Image bytes depend on torch's thread count: every test here runs on one."""


@pytest.fixture(scope="module")
def sd_pipe(tiny_model_dir: Any) -> Any:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe: Any, **kwargs: Any) -> bytes:
    """The PNG bytes of one 64 px, 2-step image with a fixed seed."""
    import torch

    generator = torch.Generator("cpu").manual_seed(7)
    image = pipe(width=64, height=64, num_inference_steps=2, generator=generator, **kwargs).images[0]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_plain_prompt_goes_to_the_pipeline_unchanged_and_draws_the_same_bytes(sd_pipe: Any) -> None:
    encoded = encode(sd_pipe, "a red cat, 16:9)", "blurry")
    assert encoded.kwargs == {"prompt": "a red cat, 16:9)", "negative_prompt": "blurry"}
    assert encoded.notes == ()
    assert encode(sd_pipe, "a red cat", "").kwargs == {"prompt": "a red cat", "negative_prompt": None}
    direct = draw(sd_pipe, prompt="a red cat, 16:9)", negative_prompt="blurry")
    assert draw(sd_pipe, **encoded.kwargs) == direct


def test_weight_one_draws_exactly_the_plain_prompt(sd_pipe: Any) -> None:
    # What holds: weight 1 leaves compel's embedding equal to the pipeline's own, bit for bit.
    encoded = encode(sd_pipe, "a (red:1) cat", "blurry")
    assert set(encoded.kwargs) == {"prompt_embeds", "negative_prompt_embeds"}
    assert draw(sd_pipe, **encoded.kwargs) == draw(sd_pipe, prompt="a red cat", negative_prompt="blurry")


def test_weights_change_the_image(sd_pipe: Any) -> None:
    plain = draw(sd_pipe, prompt="a red cat")
    images = {draw(sd_pipe, **encode(sd_pipe, p, "").kwargs) for p in ("a (red:1.5) cat", "a [red] cat")}
    assert plain not in images and len(images) == 2


def test_a_long_prompt_is_two_chunks_and_its_tail_is_drawn(sd_pipe: Any) -> None:
    import torch

    prompt = words(120)
    assert token_count(sd_pipe, prompt) == 120
    encoded = encode(sd_pipe, prompt, "")
    embeds = encoded.kwargs["prompt_embeds"]
    assert embeds.shape == (1, 154, 32)
    assert encoded.kwargs["negative_prompt_embeds"].shape == (1, 154, 32)
    # The first chunk is what the pipeline itself makes of the first 75 tokens...
    head = words(CLIP_WINDOW)
    own, _ = sd_pipe.encode_prompt(head, "cpu", 1, False)
    assert torch.equal(embeds[:, :77], own)
    # ...and the other 45 words change the picture: nothing was cut.
    assert draw(sd_pipe, **encoded.kwargs) != draw(sd_pipe, prompt=head)


def test_a_full_chunk_is_cut_after_its_last_comma(sd_pipe: Any) -> None:
    import torch

    head = words(70) + ","
    embeds = encode(sd_pipe, head + " " + words(10), "").kwargs["prompt_embeds"]
    assert embeds.shape == (1, 154, 32)
    own, _ = sd_pipe.encode_prompt(head, "cpu", 1, False)
    assert torch.equal(embeds[:, :77], own)  # the 10 words after the comma all went on


def test_break_starts_a_new_chunk(sd_pipe: Any) -> None:
    embeds = encode(sd_pipe, "a cat BREAK a dog", "").kwargs["prompt_embeds"]
    assert embeds.shape == (1, 154, 32)


def test_a_long_negative_prompt_with_a_short_prompt(sd_pipe: Any) -> None:
    encoded = encode(sd_pipe, "a cat", words(100))
    shapes = {encoded.kwargs["prompt_embeds"].shape, encoded.kwargs["negative_prompt_embeds"].shape}
    assert shapes == {(1, 154, 32)}
    short_negative = draw(sd_pipe, prompt="a cat", negative_prompt=words(CLIP_WINDOW))
    assert draw(sd_pipe, **encoded.kwargs) != short_negative


def test_image_to_image_takes_the_embeddings(sd_pipe: Any) -> None:
    from diffusers import AutoPipelineForImage2Image
    from PIL import Image

    img2img = AutoPipelineForImage2Image.from_pipe(sd_pipe)
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    encoded = encode(img2img, "(a red cat:1.2), " + words(90), "[blurry]")
    image = img2img(image=source, strength=0.5, num_inference_steps=2, **encoded.kwargs).images[0]
    assert image.size == (64, 64)


def test_a_multi_vector_textual_inversion_is_expanded_in_weighted_prompts(tiny_model_dir: Any) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    pipe.set_progress_bar_config(disable=True)
    vectors = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    pipe.load_textual_inversion({"emb_params": vectors}, token="tinytok")
    assert token_count(pipe, "tinytok cat") == 4  # the word stands for its three vectors
    weighted = encode(pipe, "(tinytok:1) cat", "")
    assert draw(pipe, **weighted.kwargs) == draw(pipe, prompt="tinytok cat")


# --- SDXL ------------------------------------------------------------------------------------

def tiny_sdxl() -> Any:
    """A tiny SDXL pipeline in memory: two CLIP text encoders (the second with projection)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from generator.tiny_model import clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=80, cross_attention_dim=64,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=8,
    )
    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=1, projection_dim=32,
    )
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       steps_offset=1, timestep_spacing="leading")
    pipe: Any = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(config), text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(), unet=unet, scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl_pipe() -> Any:
    return tiny_sdxl()


def test_sdxl_plain_and_weight_one_draw_the_pipelines_own_image(sdxl_pipe: Any) -> None:
    direct = draw(sdxl_pipe, prompt="a red cat")
    encoded = encode(sdxl_pipe, "a red cat", "")
    assert encoded.kwargs == {"prompt": "a red cat", "negative_prompt": None}
    weight_one = encode(sdxl_pipe, "a (red:1) cat", "")
    assert set(weight_one.kwargs) == {
        "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"
    }
    # SDXL draws "no negative prompt" with zeros; so do the embeddings made here.
    assert not weight_one.kwargs["negative_prompt_embeds"].any()
    assert draw(sdxl_pipe, **weight_one.kwargs) == direct
    negative = encode(sdxl_pipe, "a (red:1) cat", "blurry").kwargs
    assert draw(sdxl_pipe, **negative) == draw(sdxl_pipe, prompt="a red cat", negative_prompt="blurry")


def test_sdxl_weights_and_long_prompts(sdxl_pipe: Any) -> None:
    weighted = encode(sdxl_pipe, "a (red:1.5) cat", "").kwargs
    assert draw(sdxl_pipe, **weighted) != draw(sdxl_pipe, prompt="a red cat")
    encoded = encode(sdxl_pipe, words(120), "(ugly)").kwargs
    assert encoded["prompt_embeds"].shape == encoded["negative_prompt_embeds"].shape == (1, 154, 64)
    assert encoded["pooled_prompt_embeds"].shape == (1, 32)
    assert draw(sdxl_pipe, **encoded) != draw(sdxl_pipe, prompt=words(CLIP_WINDOW), negative_prompt="(ugly)")


def test_a_pipeline_without_compel_support_gets_the_words_and_a_note(sdxl_pipe: Any) -> None:
    from diffusers import StableDiffusionXLImg2ImgPipeline

    # A refiner-like pipeline: only the second text encoder, which compel is not set up for here.
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=sdxl_pipe.vae, text_encoder=None, text_encoder_2=sdxl_pipe.text_encoder_2, tokenizer=None,
        tokenizer_2=sdxl_pipe.tokenizer_2, unet=sdxl_pipe.unet, scheduler=sdxl_pipe.scheduler,
        requires_aesthetics_score=True,
    )
    encoded = encode(refiner, "a (red:1.4) cat BREAK " + words(80, start=3), "")
    assert encoded.kwargs["prompt"] == "a red cat " + words(80, start=3)
    assert encoded.kwargs["negative_prompt"] is None
    weights_note, dropped_note = encoded.notes
    assert "does not support prompt weights" in weights_note
    # 3 + 80 tokens: the last 8 words do not fit in 75.
    assert dropped_note.endswith(f"lost “{words(8, start=3 + 72)}”.")

