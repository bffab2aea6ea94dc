"""The tiny model is a real diffusers model: real configs, real tokenizer, both file layouts."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Ids from OpenAI's CLIP tokenizer (SimpleTokenizer on bpe_simple_vocab_16e6.txt.gz).
OPENAI_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "A Photo  of a CAT!": [49406, 320, 1125, 539, 320, 2368, 256, 49407],
    "hello world, astronaut riding a horse 🐴 naïve": [
        49406,
        3306,
        1002,
        267,
        18376,
        6765,
        320,
        4558,
        33509,
        1097,
        35689,
        563,
        49407,
    ],
}


def _state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_folder_is_a_diffusers_model(tiny_model_dir: Path) -> None:
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None]
    for part in ("unet", "vae", "text_encoder"):
        assert (tiny_model_dir / part / "config.json").is_file()
    assert sum(f.stat().st_size for f in tiny_model_dir.rglob("*") if f.is_file()) < 40e6


def test_tokenizer_ids_match_openai(tiny_model_dir: Path) -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer")
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    for text, ids in OPENAI_IDS.items():
        assert tokenizer(text).input_ids == ids, text
    # Long prompts truncate to CLIP's 77 positions instead of overflowing.
    padded = tokenizer("cat " * 200, padding="max_length", truncation=True).input_ids
    assert len(padded) == 77


def test_vocabulary_files_as_clip_builds_them(tiny_model_dir: Path) -> None:
    folder = tiny_model_dir / "tokenizer"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894


def test_from_pretrained_offline(tiny_model_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    assert pipe.vae_scale_factor == 8
    assert pipe.safety_checker is None
    assert pipe.text_encoder.config.vocab_size == 49408
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size == 32
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"


def test_weights_come_from_the_seed(tiny_model_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from generator.tiny_model import build_tiny_pipeline

    saved = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    rebuilt = build_tiny_pipeline(seed=0)
    assert _state_dicts_equal(saved.unet, rebuilt.unet)
    assert _state_dicts_equal(saved.text_encoder, rebuilt.text_encoder)


def test_single_file_is_in_the_original_ldm_layout(tiny_single_file: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(tiny_single_file), framework="pt") as checkpoint:
        keys = set(checkpoint.keys())
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in keys
    assert "first_stage_model.decoder.up.0.block.0.norm1.weight" in keys
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys
    prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.")
    assert all(key.startswith(prefixes) for key in keys)


def test_from_single_file_loads_the_same_weights(tiny_model_dir: Path, tiny_single_file: Path) -> None:
    from diffusers import StableDiffusionPipeline

    folder = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    single = StableDiffusionPipeline.from_single_file(
        str(tiny_single_file),
        config=str(tiny_single_file.with_suffix(".config")),
        local_files_only=True,
    )
    for part in ("unet", "vae", "text_encoder"):
        assert _state_dicts_equal(getattr(folder, part), getattr(single, part)), part
    assert single.tokenizer("a photo of a cat").input_ids == OPENAI_IDS["a photo of a cat"]


def test_build_single_file(tmp_path: Path) -> None:
    from generator.loading import load_pipeline
    from generator.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path, seed=3, single_file=True)
    assert path == tmp_path / "tiny.safetensors"
    assert (tmp_path / "model_index.json").is_file()
    assert (path.with_suffix(".config") / "model_index.json").is_file()
    assert not list(path.with_suffix(".config").rglob("*.safetensors"))
    pipe = load_pipeline(str(path), "cpu", "float32")
    assert pipe.unet.config.block_out_channels == [32, 64]


def test_another_seed_gives_other_weights(tiny_model_dir: Path) -> None:
    from diffusers import UNet2DConditionModel

    from generator.tiny_model import build_tiny_pipeline

    saved = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet")
    assert not _state_dicts_equal(saved, build_tiny_pipeline(seed=1).unet)
