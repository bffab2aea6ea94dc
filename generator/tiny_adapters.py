"""Tiny LoRAs and a tiny textual-inversion embedding with random weights, for tests and trials.

Made the way real ones are made and saved in the layouts real ones are downloaded in: the
LoRA with peft on the tiny model's UNet and text encoder, written by diffusers'
`save_lora_weights`; the embedding in A1111's layout (`emb_params`). A second LoRA is made
for a tiny SDXL UNet, so the worker's refusal of a LoRA for another base model can be tried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLE_LORA = "tiny-style"
SDXL_LORA = "sdxl-style"
TOKEN_EMBEDDING = "tiny-token"
# Vectors per embedding: A1111 embeddings often hold several; two exercises that path.
TOKEN_VECTORS = 2
_RANK = 4
_ATTENTION = ["to_k", "to_q", "to_v", "to_out.0"]
_TEXT_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]
# A fresh LoRA adds nothing (lora_B starts at zero); values of this size change the tiny
# model's image visibly without drowning it.
_B_STD = 0.3
# A tiny SDXL UNet: the tiny model's blocks, with SDXL's wider cross-attention (two text
# encoders side by side) and its size/crop ("text_time") conditioning.
_SDXL_UNET: dict[str, Any] = dict(
    sample_size=8,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=64,
    attention_head_dim=(2, 4),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=80,
    norm_num_groups=8,
)


def build_tiny_loras(dir: Path, model_dir: Path, *, seed: int = 0) -> dict[str, Path]:
    """`tiny-style.safetensors` (UNet and text encoder) for the tiny model in `model_dir`
    and `sdxl-style.safetensors` (made for a tiny SDXL UNet, so it fits no SD 1.x model)."""
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet: Any = UNet2DConditionModel.from_pretrained(Path(model_dir), subfolder="unet")
        text_encoder: Any = CLIPTextModel.from_pretrained(Path(model_dir), subfolder="text_encoder")
        StableDiffusionPipeline.save_lora_weights(
            dir, weight_name=f"{STYLE_LORA}.safetensors",
            unet_lora_layers=_lora_layers(torch, unet, _ATTENTION),
            text_encoder_lora_layers=_lora_layers(torch, text_encoder, _TEXT_ATTENTION))
        sdxl_unet: Any = UNet2DConditionModel(**_SDXL_UNET)
        StableDiffusionXLPipeline.save_lora_weights(
            dir, weight_name=f"{SDXL_LORA}.safetensors",
            unet_lora_layers=_lora_layers(torch, sdxl_unet, _ATTENTION))
    return {name: dir / f"{name}.safetensors" for name in (STYLE_LORA, SDXL_LORA)}


def _lora_layers(torch: Any, model: Any, targets: list[str]) -> dict[str, Any]:
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    config = LoraConfig(r=_RANK, lora_alpha=_RANK, init_lora_weights="gaussian",
                        target_modules=targets)
    # peft itself rather than transformers' `add_adapter`, which wants a newer peft.
    model = inject_adapter_in_model(config, model)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, _B_STD)
    return convert_state_dict_to_diffusers(get_peft_model_state_dict(model))


def build_tiny_embeddings(dir: Path, model_dir: Path, *, seed: int = 0) -> dict[str, Path]:
    """`tiny-token.safetensors`: TOKEN_VECTORS random vectors of the tiny text encoder's
    width, in A1111's layout, as most embeddings are shared."""
    import json

    import torch
    from safetensors.torch import save_file

    config = json.loads((Path(model_dir) / "text_encoder" / "config.json").read_text())
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    vectors = torch.randn(TOKEN_VECTORS, config["hidden_size"], generator=generator)
    path = dir / f"{TOKEN_EMBEDDING}.safetensors"
    save_file({"emb_params": vectors}, str(path))
    return {TOKEN_EMBEDDING: path}


def build_tiny_sdxl_pipeline(*, seed: int = 0) -> Any:
    """A tiny SDXL pipeline in memory (two 32-wide CLIP text encoders, the UNet of
    `sdxl-style`), so SDXL LoRAs and embeddings can be tried: 64 px in a fraction of a second."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from generator.tiny_model import clip_tokenizer

    config = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=1, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet: Any = UNet2DConditionModel(**_SDXL_UNET)
        vae: Any = AutoencoderKL(block_out_channels=(16, 16, 32, 32), latent_channels=4, norm_num_groups=8,
                                 down_block_types=("DownEncoderBlock2D",) * 4,
                                 up_block_types=("UpDecoderBlock2D",) * 4)
        encoders: Any = (CLIPTextModel(config), CLIPTextModelWithProjection(config))
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=vae.eval(), text_encoder=encoders[0].eval(), text_encoder_2=encoders[1].eval(),
        tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(), unet=unet.eval(), scheduler=scheduler)
