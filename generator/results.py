"""What a generation hands back: one image with its seed, size, parameters text and notes."""

from __future__ import annotations

import threading

from PIL import Image

from generator.png import encode_png

__all__ = ["GeneratedImage"]


class GeneratedImage:
    """One result: the picture, its seed and size, its A1111 `parameters` text, and notes.

    `png` is encoded on first access (once; the worker does it on its finishing thread, off
    the GPU's path) unless it was given when built."""

    __slots__ = ("_lock", "_png", "height", "image", "notes", "parameters", "seed", "width")

    def __init__(self, png: bytes | None = None, seed: int = 0, width: int = 0,
                 height: int = 0, parameters: str = "", notes: tuple[str, ...] = (), *,
                 image: Image.Image | None = None) -> None:
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
