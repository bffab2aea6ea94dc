"""Tiny ControlNets and a tiny depth annotator with random weights, for tests and trials.

Built like the real ones: `ControlNetModel.from_unet` on the tiny model's UNet and a
transformers DPT depth estimator, both saved with `save_pretrained` and loaded back from
the folder exactly as IMAGINE_CONTROLNETS and IMAGINE_ANNOTATORS load a downloaded one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The kinds written by `build_tiny_controlnets`, each with its own random weights.
TINY_KINDS: dict[str, int] = {"canny": 1, "depth": 2}
# A freshly made ControlNet adds exactly nothing (its output convolutions start at zero);
# weights of this size make the tiny one steer the image visibly without swamping it.
_ZERO_CONV_STD = 0.05


def build_tiny_controlnets(dir: Path, model_dir: Path) -> dict[str, Path]:
    """A ControlNet folder per kind under `dir` for the tiny model in `model_dir`."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(Path(model_dir), subfolder="unet")
    folders: dict[str, Path] = {}
    for kind, seed in TINY_KINDS.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            controlnet: Any = ControlNetModel.from_unet(unet)
            _wake_zero_convolutions(torch, controlnet)
        folder = Path(dir) / kind
        controlnet.save_pretrained(folder, safe_serialization=True)
        folders[kind] = folder
    return folders


def _wake_zero_convolutions(torch: Any, controlnet: Any) -> None:
    blocks = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
              controlnet.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for block in blocks:
            block.weight.normal_(0.0, _ZERO_CONV_STD)
            block.bias.normal_(0.0, _ZERO_CONV_STD)


def build_tiny_depth_estimator(dir: Path, *, seed: int = 0) -> Path:
    """A DPT depth-estimation model (80 k weights, 64 px input) saved in `dir` for IMAGINE_ANNOTATORS."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=64,
        patch_size=16,
        neck_hidden_sizes=[8, 16, 16, 16],
        fusion_hidden_size=16,
        backbone_out_indices=[0, 1, 2, 3],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DPTForDepthEstimation(config).eval()
    dir = Path(dir)
    model.save_pretrained(dir)
    DPTImageProcessor(size={"height": 64, "width": 64}, keep_aspect_ratio=False).save_pretrained(dir)
    return dir
