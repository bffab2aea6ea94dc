"""Cheap pictures of a job's latents while it is drawn.

The linear latent-to-RGB approximation (a 3×C matrix per latent format, the factors
ComfyUI and A1111 use) costs next to nothing; a TAESD decoder (diffusers' AutoencoderTiny,
IMAGINE_PREVIEW_DECODER) gives a truer picture for a few milliseconds.

Latents in the denoising loop are the ones the UNet sees (the VAE's output times its
scaling factor). TAESD was distilled on exactly those, so diffusers gives it
scaling_factor=1.0; the general rule a pipeline uses before decoding,
`latents / scaling_factor + shift_factor`, is applied with the decoder's own config so
decoders published with other factors (SD3/Flux variants) work too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image

from settings.catalogue import FAMILIES
from settings.errors import ConfigError

log = logging.getLogger(__name__)

# Longest side of a preview: enough to see the picture form, small enough to post often.
PREVIEW_SIDE = 256
# TAESD upsamples latents 8×; latents are shrunk to this side first so a 1024 px SDXL
# image costs the same small decode as a 256 px one.
TAESD_LATENT_SIDE = PREVIEW_SIDE // 8
ANY_FAMILY = "*"
SETTING = "IMAGINE_PREVIEW_DECODER"

# Latent channel → RGB factors and bias of the 4-channel formats (SD 1.x/2.x and SDXL).
_LINEAR: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068],
              [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
             [0.1084, -0.0175, -0.0011]),
}


def parse_decoders(value: str | None) -> dict[str, str]:
    """IMAGINE_PREVIEW_DECODER as {family or "*": source}.

    "src" → {"*": "src"}; "sd15=a,sdxl=b" → {"sd15": "a", "sdxl": "b"}; "*=a" works too.
    """
    if value is None or not value.strip():
        return {}
    text = value.strip()
    if "=" not in text:
        if "," in text:
            raise ConfigError(f"{SETTING}={value!r}: give one TAESD source for every family, "
                              "or family=source pairs separated by commas "
                              "(sd15=madebyollin/taesd,sdxl=madebyollin/taesdxl)")
        return {ANY_FAMILY: text}
    decoders: dict[str, str] = {}
    for part in text.split(","):
        family, sep, source = (piece.strip() for piece in part.partition("="))
        family = family.lower()
        if not sep or not family or not source:
            raise ConfigError(f"{SETTING}: {part.strip()!r} is not family=source "
                              "(e.g. sdxl=madebyollin/taesdxl)")
        if family != ANY_FAMILY and family not in FAMILIES:
            raise ConfigError(f"{SETTING}: unknown family {family!r}; use "
                              f"{', '.join(FAMILIES)} or * for every family")
        if family in decoders:
            raise ConfigError(f"{SETTING}: family {family!r} is given twice")
        decoders[family] = source
    return decoders


def preview_maker(family: str | None, decoders: Mapping[str, str], device: str = "cpu",
                  dtype: Any = None) -> PreviewMaker:
    """The preview decoder of `family`: TAESD when `decoders` names one for it (or "*"),
    else the linear approximation. A TAESD that cannot load is logged once, with what to
    fix, and the linear approximation is used instead (the caller caches the result)."""
    source = decoders.get(family or "") or decoders.get(ANY_FAMILY)
    if not source:
        return PreviewMaker(family)
    try:
        decoder = _load_taesd(source, device, dtype)
    except Exception as exc:
        log.warning("%s: cannot load the TAESD decoder %r for %s models (%s: %s); set it to a "
                    "diffusers AutoencoderTiny folder or hub id available offline "
                    "(e.g. madebyollin/taesd for sd15/sd21, madebyollin/taesdxl for sdxl); "
                    "previews use the linear approximation meanwhile",
                    SETTING, source, family or "these", type(exc).__name__, exc)
        return PreviewMaker(family)
    return TaesdPreviewMaker(family, decoder, source)


def _load_taesd(source: str, device: str, dtype: Any) -> Any:
    from diffusers import AutoencoderTiny  # noqa: PLC0415 - only when a TAESD is configured

    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    decoder = AutoencoderTiny.from_pretrained(source, **kwargs)
    return decoder.to(device).eval()


class PreviewMaker:
    """Turns a batch of latents (B×C×h×w) into one small RGB image per row (linear)."""

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


class TaesdPreviewMaker(PreviewMaker):
    """A TAESD (AutoencoderTiny) decode of latents shrunk to TAESD_LATENT_SIDE."""

    def __init__(self, family: str | None, decoder: Any, source: str) -> None:
        super().__init__(family)
        self.decoder = decoder
        self.source = source
        config = decoder.config
        self.channels = int(config.latent_channels)
        self.scaling = float(getattr(config, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(config, "shift_factor", 0.0) or 0.0)
        self._mismatch_logged = False

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        if latents.ndim != 4 or latents.shape[1] != self.channels:
            if not self._mismatch_logged:
                self._mismatch_logged = True
                log.warning("%s: the TAESD decoder %r takes %d latent channels but %s latents "
                            "have shape %s; set a decoder made for this family. Linear "
                            "previews meanwhile", SETTING, self.source, self.channels,
                            self.family, tuple(latents.shape))
            return super().decode(latents)
        parameter = next(self.decoder.parameters())
        with torch.no_grad():
            small = _shrink(latents.detach().to(parameter.device, parameter.dtype))
            sample = self.decoder.decode(small / self.scaling + self.shift).sample
            rgb = ((sample.float() + 1) / 2).clamp(0, 1).cpu()
        return [_to_image(row) for row in rgb]


def _shrink(latents: torch.Tensor) -> torch.Tensor:
    """Latents averaged down so their longest side is at most TAESD_LATENT_SIDE."""
    height, width = latents.shape[-2:]
    scale = TAESD_LATENT_SIDE / max(height, width)
    if scale >= 1:
        return latents
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return torch.nn.functional.interpolate(latents, size=size, mode="area")


def _to_image(rgb: torch.Tensor) -> Image.Image:
    array = (rgb.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array, "RGB")
    scale = PREVIEW_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)
