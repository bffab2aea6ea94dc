"""Overlapping tiles: work on an image of any size in pieces of bounded size.

A super-resolution model and the detail pass of an upscale both run tile by tile, so their
memory stays the same at any size. Each tile is pasted over the ones before it with a linear
fade across the overlap, which hides the seams. Pure Pillow and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Tile:
    """A box of the image, and how much it overlaps the tiles left of it and above it."""

    left: int
    top: int
    width: int
    height: int
    overlap_left: int
    overlap_top: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.left + self.width, self.top + self.height)

    def scaled(self, scale: int) -> Tile:
        return Tile(*(value * scale for value in (self.left, self.top, self.width, self.height,
                                                  self.overlap_left, self.overlap_top)))


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of `tile` pixels start so they cover `length` with at least `overlap`."""
    if length <= tile:
        return [0]
    step = max(1, tile - min(overlap, tile // 2))
    positions = list(range(0, length - tile, step))
    return [*positions, length - tile]


def grid(width: int, height: int, tile_width: int, tile_height: int, overlap: int) -> list[Tile]:
    """Tiles covering width×height, row by row; the last row and column end at the edges."""
    tile_width, tile_height = min(tile_width, width), min(tile_height, height)
    columns = starts(width, tile_width, overlap)
    rows = starts(height, tile_height, overlap)
    tiles = []
    for row, top in enumerate(rows):
        above = rows[row - 1] + tile_height - top if row else 0
        for column, left in enumerate(columns):
            before = columns[column - 1] + tile_width - left if column else 0
            tiles.append(Tile(left, top, tile_width, tile_height, before, above))
    return tiles


def paste_faded(canvas: Image.Image, piece: Image.Image, tile: Tile) -> None:
    """Paste `piece` at `tile`, fading in across its overlap with the tiles pasted before."""
    if not tile.overlap_left and not tile.overlap_top:
        canvas.paste(piece, (tile.left, tile.top))
        return
    alpha = np.outer(_ramp(tile.height, tile.overlap_top), _ramp(tile.width, tile.overlap_left))
    mask = Image.fromarray(np.round(alpha * 255).astype(np.uint8), "L")
    canvas.paste(piece, (tile.left, tile.top), mask)


def _ramp(length: int, fade: int) -> np.ndarray:
    ramp = np.ones(length, dtype=np.float64)
    if fade:
        ramp[:fade] = np.arange(1, fade + 1) / (fade + 1)
    return ramp
