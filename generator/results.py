"""What a generation hands back: one image with its seed, size, parameters text and notes.

A pipeline with diffusers' own safety checker (SD 1.x models that ship one) returns a black
image for what it flags, and says so in `nsfw_content_detected`. `pipeline_images` marks
those images (in their `info`, which travels with the image through resizes), and a
GeneratedImage made from one is `pipeline_flagged`, so the worker can tell the user why the
image is black instead of delivering it without a word.
"""

from __future__ import annotations

import threading
from typing import Any

from PIL import Image

from generator.png import encode_png

__all__ = ["GeneratedImage", "is_pipeline_flagged", "pipeline_images"]

# The key of a PIL image's `info` that marks an image the pipeline's safety checker withheld.
PIPELINE_FLAG = "imagine.pipeline_nsfw"


def pipeline_images(output: Any) -> list[Image.Image]:
    """The images of a diffusers pipeline's output, those its safety checker flagged marked."""
    images = list(output.images)
    flags = getattr(output, "nsfw_content_detected", None) or []
    # One flag per image when the pipeline has a checker; None (no flags) when it has none.
    for image, flagged in zip(images, flags, strict=False):
        if flagged and isinstance(image, Image.Image):
            image.info[PIPELINE_FLAG] = True
    return images


def is_pipeline_flagged(image: Image.Image | None) -> bool:
    return image is not None and bool(image.info.get(PIPELINE_FLAG))


class GeneratedImage:
    """One result: the picture, its seed and size, its A1111 `parameters` text, and notes.

    `png` is encoded on first access (once; the worker does it on its finishing thread, off
    the GPU's path) unless it was given when built. `pipeline_flagged`: the pipeline's own
    safety checker withheld it (it is black); by default read from the image's mark."""

    __slots__ = ("_lock", "_png", "height", "image", "notes", "parameters", "pipeline_flagged",
                 "seed", "width")

    def __init__(self, png: bytes | None = None, seed: int = 0, width: int = 0,
                 height: int = 0, parameters: str = "", notes: tuple[str, ...] = (), *,
                 image: Image.Image | None = None, pipeline_flagged: bool | None = None) -> None:
        if png is None and image is None:
            raise ValueError("GeneratedImage needs png or image")
        self._png = png
        self.image = image
        self.seed = seed
        self.width = width
        self.height = height
        self.parameters = parameters
        # What the user should be told about this result: a capped size, a fallback used.
        self.notes = tuple(notes)
        self.pipeline_flagged = (is_pipeline_flagged(image) if pipeline_flagged is None
                                 else pipeline_flagged)
        self._lock = threading.Lock()

    @property
    def png(self) -> bytes:
        if self._png is None:
            with self._lock:
                if self._png is None:
                    assert self.image is not None
                    self._png = encode_png(self.image, self.parameters)
        return self._png

    def __repr__(self) -> str:
        return (f"GeneratedImage(seed={self.seed}, width={self.width}, height={self.height}, "
                f"parameters={self.parameters!r}, notes={self.notes!r})")
