"""A small Stable-Diffusion-1.x-style pipeline with random weights and real configs.

No machine of this project can download a model, so tests, the bench and `imagine model
tiny DIR` use this one instead. It is built from the real diffusers/transformers classes,
saved with `save_pretrained` and loaded back exactly like a real model: a diffusers folder,
or a single `.safetensors` file in the original (LDM) key layout plus a folder of configs,
which is what `from_single_file` reads for a checkpoint downloaded from a model site.

The tokenizer is CLIP's real one, built offline from the vendored BPE vocabulary, so token
ids match OpenAI's (and therefore real models') exactly.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator.tiny_nsfw import NSFW_FOLDER, build_tiny_nsfw

if TYPE_CHECKING:
    import torch

BPE_VOCABULARY = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"
SINGLE_FILE_NAME = "tiny.safetensors"
# A tiny TAESD beside the pipeline (IMAGINE_PREVIEW_DECODER=DIR/taesd); diffusers ignores
# folders that model_index.json does not name, so the pipeline loads as before.
TAESD_FOLDER = "taesd"
CLIP_MAX_LENGTH = 77
# CLIP's SimpleTokenizer keeps exactly this many merges of the vocabulary file.
_CLIP_MERGES = 49152 - 256 - 2

_UNET: dict[str, Any] = dict(
    sample_size=64,  # 64 latents × VAE factor 8 = 512 px, the pipeline's default size as in SD 1.x
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=32,
)
_VAE: dict[str, Any] = dict(
    sample_size=512,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    # Four blocks keep the real downscale factor of 8 (2 ** (blocks - 1)).
    block_out_channels=(16, 16, 32, 32),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=1,
    norm_num_groups=8,
)
_TEXT_ENCODER: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=CLIP_MAX_LENGTH,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=1,
)
# SD 1.x's noise schedule, with the Euler sampler most front ends default to.
_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    steps_offset=1,
    timestep_spacing="leading",
)


def build_tiny_model(dir: Path, *, seed: int = 0, single_file: bool = False) -> Path:
    """Write the tiny pipeline under `dir`; return what `IMAGINE_MODEL` should point at.

    Always a diffusers folder (`dir` itself, with `model_index.json`), returned as is, with
    a tiny TAESD in `dir/taesd` and a tiny NSFW image classifier in `dir/nsfw` beside it.
    `single_file=True` also writes the same weights as `dir/tiny.safetensors` in the
    original LDM layout, with the configs `from_single_file` needs in `dir/tiny.config/`
    (the convention of `generator.loading`), and returns the file.
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(seed=seed)
    pipe.save_pretrained(dir, safe_serialization=True)
    build_tiny_taesd(dir / TAESD_FOLDER, seed=seed)
    # IMAGINE_NSFW_MODEL=DIR/nsfw: a tiny image classifier, ignored by diffusers like taesd.
    build_tiny_nsfw(dir / NSFW_FOLDER, seed=seed)
    _add_slow_tokenizer_files(dir / "tokenizer")
    if single_file:
        return save_single_file(pipe, dir / SINGLE_FILE_NAME)
    return dir


def build_tiny_pipeline(*, seed: int = 0) -> Any:
    """The tiny pipeline in memory, weights drawn from `seed` without touching global RNG."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with _seeded(torch, seed):
        unet: Any = UNet2DConditionModel(**_UNET)
        vae: Any = AutoencoderKL(**_VAE)
        text_encoder: Any = CLIPTextModel(CLIPTextConfig(**_TEXT_ENCODER))
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=clip_tokenizer(),
        unet=unet.eval(),
        scheduler=EulerDiscreteScheduler(**_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_taesd(folder: Path, *, seed: int = 0) -> Path:
    """A TAESD (AutoencoderTiny) with random weights for the tiny model's 4 latent channels,
    saved with save_pretrained: real TAESD's 8× upsampling, far fewer features."""
    import torch
    from diffusers import AutoencoderTiny

    with _seeded(torch, seed):
        taesd: Any = AutoencoderTiny(
            latent_channels=_VAE["latent_channels"],
            encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
            num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
    taesd.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


@contextmanager
def _seeded(torch: Any, seed: int) -> Iterator[None]:
    # fork_rng restores the caller's RNG afterwards; devices=[] keeps CUDA out of it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def clip_tokenizer() -> Any:
    """OpenAI's CLIP tokenizer as a transformers `CLIPTokenizer`, built offline."""
    from transformers import CLIPTokenizer

    # transformers 5 silently builds a 2-token vocabulary from CLIPTokenizer(vocab_file=…):
    # from_pretrained on a folder is the construction that reads the files. The loaded
    # tokenizer keeps everything in memory, so the folder can go at once.
    with tempfile.TemporaryDirectory(prefix="imagine-clip-") as folder:
        write_clip_tokenizer_files(Path(folder))
        return CLIPTokenizer.from_pretrained(folder)


def write_clip_tokenizer_files(folder: Path) -> None:
    """vocab.json, merges.txt and a tokenizer config, as CLIP's SimpleTokenizer builds them."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_vocabulary(folder)
    # Without model_max_length=77 the pipeline's truncation overflows.
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": CLIP_MAX_LENGTH,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
        "errors": "replace",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def _write_vocabulary(folder: Path) -> None:
    merges = clip_merges()
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(pair) for pair in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(
        json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False),
        encoding="utf-8",
    )
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n", encoding="utf-8"
    )


def _add_slow_tokenizer_files(folder: Path) -> None:
    # transformers 5 saves only tokenizer.json; transformers 4's CLIPTokenizer (the class
    # model_index.json names) reads vocab.json and merges.txt, so ship those too.
    _write_vocabulary(folder)


def clip_merges() -> list[tuple[str, str]]:
    lines = gzip.decompress(BPE_VOCABULARY.read_bytes()).decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : _CLIP_MERGES + 1]]  # type: ignore[misc]


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's (and GPT-2's) reversible byte → printable character table.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


# --- The single-file (original LDM) layout -------------------------------------------------


def save_single_file(pipe: Any, path: Path) -> Path:
    """Write `pipe` as one LDM-layout checkpoint at `path` plus its configs in `<stem>.config/`.

    The configs folder is what `from_single_file(path, config=…)` reads offline: the
    pipeline's model_index.json, each model's config.json, the tokenizer and the scheduler,
    but no weights (those come from the checkpoint, through diffusers' own conversion).
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(ldm_state_dict(pipe), str(path), metadata={"format": "pt"})
    configs = path.with_suffix(".config")
    pipe.save_config(configs)
    pipe.unet.save_config(configs / "unet")
    pipe.vae.save_config(configs / "vae")
    pipe.text_encoder.config.save_pretrained(configs / "text_encoder")
    pipe.tokenizer.save_pretrained(configs / "tokenizer")
    _add_slow_tokenizer_files(configs / "tokenizer")
    pipe.scheduler.save_config(configs / "scheduler")
    return path


def ldm_state_dict(pipe: Any) -> dict[str, torch.Tensor]:
    """The pipeline's weights under the key names of an original SD 1.x checkpoint."""
    state: dict[str, torch.Tensor] = {}
    for key, value in _unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config)).items():
        state["model.diffusion_model." + key] = value
    for key, value in _vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)).items():
        state["first_stage_model." + key] = value
    for key, value in pipe.text_encoder.state_dict().items():
        # transformers ≥ 5.6 dropped the `text_model.` wrapper; checkpoints still have it.
        state["cond_stage_model.transformer.text_model." + key.removeprefix("text_model.")] = value
    return {k: v.detach().contiguous() for k, v in state.items()}


_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def _unet_prefixes(config: dict[str, Any]) -> dict[str, str]:
    """diffusers prefix → LDM prefix; the inverse of diffusers' convert_ldm_unet_checkpoint."""
    per_block = config["layers_per_block"]
    blocks = len(config["block_out_channels"])
    prefixes = dict(_UNET_TOP)
    for i in range(blocks):
        for j in range(per_block):
            ldm = f"input_blocks.{(per_block + 1) * i + j + 1}"
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"{ldm}.0."
            prefixes[f"down_blocks.{i}.attentions.{j}."] = f"{ldm}.1."
        if i < blocks - 1:
            ldm = f"input_blocks.{(per_block + 1) * (i + 1)}.0.op."
            prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = ldm
        has_attention = config["up_block_types"][i].startswith("CrossAttn")
        for j in range(per_block + 1):
            ldm = f"output_blocks.{(per_block + 1) * i + j}"
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"{ldm}.0."
            prefixes[f"up_blocks.{i}.attentions.{j}."] = f"{ldm}.1."
        if i < blocks - 1:
            # The upsampler follows the last layer's resnet (.0) and attention (.1) if any.
            ldm = f"output_blocks.{(per_block + 1) * i + per_block}.{2 if has_attention else 1}"
            prefixes[f"up_blocks.{i}.upsamplers.0.conv."] = f"{ldm}.conv."
    prefixes["mid_block.resnets.0."] = "middle_block.0."
    prefixes["mid_block.attentions.0."] = "middle_block.1."
    prefixes["mid_block.resnets.1."] = "middle_block.2."
    return prefixes


def _unet_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    prefixes = _unet_prefixes(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix = _longest_prefix(key, prefixes)
        rest = key[len(prefix) :]
        if ".resnets." in prefix:
            for new, old in _UNET_RESNET.items():
                if rest.startswith(new + "."):
                    rest = old + rest[len(new) :]
        out[prefixes[prefix] + rest] = value
    return out


_VAE_ATTENTION = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def _vae_prefixes(config: dict[str, Any]) -> dict[str, str]:
    """diffusers prefix → LDM prefix; the inverse of diffusers' convert_ldm_vae_checkpoint."""
    blocks = len(config["block_out_channels"])
    prefixes = {
        "quant_conv.": "quant_conv.",
        "post_quant_conv.": "post_quant_conv.",
    }
    for part in ("encoder", "decoder"):
        prefixes[f"{part}.conv_in."] = f"{part}.conv_in."
        prefixes[f"{part}.conv_out."] = f"{part}.conv_out."
        prefixes[f"{part}.conv_norm_out."] = f"{part}.norm_out."
        prefixes[f"{part}.mid_block.resnets.0."] = f"{part}.mid.block_1."
        prefixes[f"{part}.mid_block.resnets.1."] = f"{part}.mid.block_2."
        prefixes[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
    for i in range(blocks):
        prefixes[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        # LDM numbers the decoder's levels from the bottom, diffusers from the top.
        prefixes[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{blocks - 1 - i}.block."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{blocks - 1 - i}.upsample."
    return prefixes


def _vae_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    prefixes = _vae_prefixes(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix = _longest_prefix(key, prefixes)
        rest = key[len(prefix) :].replace("conv_shortcut", "nin_shortcut")
        if ".attentions." in prefix:
            for new, old in _VAE_ATTENTION.items():
                if rest.startswith(new):
                    rest = old + rest[len(new) :]
            if value.ndim == 2:
                # LDM's VAE attention uses 1×1 convolutions where diffusers uses Linear.
                value = value[:, :, None, None]
        out[prefixes[prefix] + rest] = value
    return out


def _longest_prefix(key: str, prefixes: dict[str, str]) -> str:
    matches = [p for p in prefixes if key.startswith(p)]
    if not matches:
        raise ValueError(f"no LDM name for weight {key!r}: the model's layout is not SD 1.x")
    return max(matches, key=len)
