"""The super-resolution model of IMAGINE_UPSCALER, loaded with spandrel and run in tiles.

spandrel (the loader ComfyUI uses) recognises Real-ESRGAN, 4x-UltraSharp, SwinIR, HAT and
dozens more from the weights alone. The model runs tile by tile, as ComfyUI's
ImageUpscaleWithModel does, so its memory stays bounded at any image size; a tile that does
not fit in GPU memory is retried at half the size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from generator.errors import GenerationCancelled, GenerationError, ModelError
from generator.tiles import grid, paste_faded
from settings.i18n import N_, _

# Input pixels per tile side and their overlap: ComfyUI's defaults, which suit every common
# architecture's receptive field.
TILE = 512
OVERLAP = 32
MIN_TILE = 128
ADVICE = (N_("point IMAGINE_UPSCALER at a super-resolution model file (.pth or .safetensors: "
             "Real-ESRGAN, 4x-UltraSharp, SwinIR, …), or unset it"))

TileProgress = Callable[[int, int], None]


class Upscaler:
    """One super-resolution model on the engine's device and, where it allows, its dtype."""

    def __init__(self, path: Path, device: str, dtype: torch.dtype) -> None:
        self.path = path
        self.model = _load(path)
        self.dtype = _supported_dtype(self.model, dtype)
        self.model.to(device=torch.device(device), dtype=self.dtype).eval()
        self.device = device

    @property
    def scale(self) -> int:
        return int(self.model.scale)

    @property
    def label(self) -> str:
        return self.path.stem

    def enlarge(
        self,
        image: Image.Image,
        on_tile: TileProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Image.Image:
        """`image` enlarged `scale` times, tile by tile."""
        from spandrel import ModelTiling

        # Models that tile themselves, or whose results suffer from tiling, get the whole
        # image first; running out of memory still falls back to tiles.
        whole = self.model.tiling in (ModelTiling.INTERNAL, ModelTiling.DISCOURAGED)
        tile = max(image.width, image.height, TILE) if whole else TILE
        while True:
            try:
                return self._tiled(image, tile, on_tile, should_cancel)
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                if tile // 2 < MIN_TILE:
                    raise GenerationError(
                        _("out of GPU memory upscaling even in {tile}px tiles: free the GPU or "
                          "use a smaller upscaler model").format(tile=tile)) from exc
                tile //= 2

    def _tiled(self, image: Image.Image, tile: int, on_tile: TileProgress | None,
               should_cancel: Callable[[], bool] | None) -> Image.Image:
        scale = self.scale
        result = Image.new("RGB", (image.width * scale, image.height * scale))
        tiles = grid(image.width, image.height, tile, tile, OVERLAP)
        for index, piece in enumerate(tiles):
            if should_cancel is not None and should_cancel():
                raise GenerationCancelled(_("cancelled after tile {index} of {tiles_length}").format(
                                              index=index, tiles_length=len(tiles)))
            enlarged = self._run(image.crop(piece.box))
            paste_faded(result, enlarged, piece.scaled(scale))
            if on_tile is not None:
                on_tile(index + 1, len(tiles))
        return result

    def _run(self, image: Image.Image) -> Image.Image:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
        batch = pixels.permute(2, 0, 1).unsqueeze(0).to(self.device, self.dtype) / 255
        try:
            with torch.inference_mode():
                output = self.model(batch)
        except torch.cuda.OutOfMemoryError:
            raise  # enlarge() retries with smaller tiles
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise GenerationError(_("upscaling with IMAGINE_UPSCALER={path} failed ({name}: "
                                    "{first})").format(
                                      path=self.path, name=type(exc).__name__, first=first)) from exc
        output = output[0].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0)
        return Image.fromarray(output.cpu().numpy())


def _load(path: Path) -> Any:
    from spandrel import ImageModelDescriptor, ModelLoader

    try:
        model = ModelLoader().load_from_file(path)
    except Exception as exc:  # spandrel raises many kinds for files it cannot read
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(_("IMAGINE_UPSCALER={path} could not be loaded ({reason}): {advice}").format(
                             path=path, reason=reason[:200], advice=_(ADVICE))) from exc
    if not isinstance(model, ImageModelDescriptor) or model.purpose != "SR" or model.scale < 2:
        kind = f"a {model.architecture.name} model for {model.purpose}"
        raise ModelError(_("IMAGINE_UPSCALER={path} is {kind}, not super-resolution: {advice}").format(
                             path=path, kind=kind, advice=_(ADVICE)))
    return model


def _supported_dtype(model: Any, wanted: torch.dtype) -> torch.dtype:
    # Some architectures give NaNs or errors in half precision: spandrel knows which.
    if wanted == torch.float16 and model.supports_half:
        return wanted
    if wanted == torch.bfloat16 and model.supports_bfloat16:
        return wanted
    return torch.float32
