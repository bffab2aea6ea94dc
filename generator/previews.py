"""Cheap pictures of a job's latents while it is drawn.

The linear latent-to-RGB approximation (a 3×C matrix per latent format, the factors
ComfyUI and A1111 use) costs next to nothing; a TAESD decoder (diffusers' AutoencoderTiny,
IMAGINE_PREVIEW_DECODER) gives a truer picture for a few milliseconds.
"""

from __future__ import annotations

import torch
from PIL import Image

# Longest side of a preview: enough to see the picture form, small enough to post often.
PREVIEW_SIDE = 256

# Latent channel → RGB factors and bias of the 4-channel formats (SD 1.x/2.x and SDXL).
_LINEAR: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068],
              [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
             [0.1084, -0.0175, -0.0011]),
}


class PreviewMaker:
    """Turns a batch of latents (B×C×h×w) into one small RGB image per row."""

    def __init__(self, family: str | None) -> None:
        self.family = family or "sd"

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        with torch.no_grad():
            rgb = self._linear(latents.detach().float().cpu())
        return [_to_image(row) for row in rgb]

    def _linear(self, latents: torch.Tensor) -> torch.Tensor:
        factors, bias = _LINEAR["sdxl" if self.family.startswith("sdxl") else "sd"]
        channels = latents.shape[1]
        if channels != len(factors):
            # Another latent format: its first three channels, normalised, still show layout.
            rgb = latents[:, :3]
            low, high = rgb.amin(dim=(2, 3), keepdim=True), rgb.amax(dim=(2, 3), keepdim=True)
            return (rgb - low) / (high - low).clamp(min=1e-6)
        matrix = torch.tensor(factors, dtype=latents.dtype)
        rgb = torch.einsum("bchw,cr->brhw", latents, matrix)
        rgb = rgb + torch.tensor(bias, dtype=latents.dtype).view(1, 3, 1, 1)
        return ((rgb + 1) / 2).clamp(0, 1)


def _to_image(rgb: torch.Tensor) -> Image.Image:
    array = (rgb.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array, "RGB")
    scale = PREVIEW_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)
