"""PNG bytes with the generation parameters inside, the way A1111-compatible tools read them.

Pure Pillow (no torch): bots and the web server import this to read metadata back.
"""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from generator.request import SAMPLER_LABELS, ImageRequest

PARAMETERS_KEY = "parameters"


def parameters_text(
    request: ImageRequest, seed: int, model_label: str, *, sampler_label: str | None = None
) -> str:
    """A1111's `parameters` text: prompt, optional negative prompt, then one settings line.

    `sampler_label` overrides the usual label when the worker ran a substitute sampler.
    """
    label = sampler_label or SAMPLER_LABELS.get(request.sampler, request.sampler)
    settings = [
        f"Steps: {request.num_inference_steps}",
        f"Sampler: {label}",
        f"CFG scale: {request.guidance_scale}",
        f"Seed: {seed}",
        f"Size: {request.width}x{request.height}",
        f"Model: {model_label}",
    ]
    if request.mode != "txt2img":
        settings.append(f"Denoising strength: {request.strength}")
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    lines.append(", ".join(settings))
    return "\n".join(lines)


def encode_png(image: Image.Image, parameters: str) -> bytes:
    """PNG bytes with a `parameters` text chunk; the same image and text give the same bytes."""
    info = PngImagePlugin.PngInfo()
    # Pillow writes tEXt for Latin-1 text and falls back to iTXt (UTF-8) otherwise, which is
    # what A1111 does for prompts with emoji or CJK. Pillow adds no timestamp chunk.
    info.add_text(PARAMETERS_KEY, parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_parameters(png_bytes: bytes) -> str | None:
    """The `parameters` text of a PNG, or None when there is none or the bytes are not a PNG."""
    try:
        with Image.open(io.BytesIO(png_bytes)) as image:
            if image.format != "PNG":
                return None
            text = getattr(image, "text", {})
            value = text.get(PARAMETERS_KEY)
    except (OSError, ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None
