"""A tiny NSFW image classifier with random weights, for tests and offline trials.

A real transformers ViT (ViTForImageClassification) with very few features and two labels,
`normal` and `nsfw` (those of Falconsai/nsfw_image_detection), saved with its image
processor by `save_pretrained`, so IMAGINE_NSFW_MODEL=DIR/nsfw loads it through the same
`from_pretrained` path as a downloaded model. Its scores mean nothing; tests choose the
threshold that flags what they need.
"""

from __future__ import annotations

from pathlib import Path

NSFW_FOLDER = "nsfw"
LABELS = ("normal", "nsfw")
_IMAGE_SIZE = 32


def build_tiny_nsfw(folder: Path, *, seed: int = 0) -> Path:
    """Write the tiny classifier and its image processor to `folder` and return it."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=_IMAGE_SIZE, patch_size=8, num_channels=3, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)})
    # fork_rng restores the caller's RNG afterwards; devices=[] keeps CUDA out of it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTForImageClassification(config).eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE}).save_pretrained(folder)
    return folder
