"""The NSFW image classifier of IMAGINE_NSFW_MODEL: a transformers image-classification model.

Any model that `AutoModelForImageClassification` and `AutoImageProcessor` load works (a hub
id or a folder), e.g. Falconsai/nsfw_image_detection (Apache-2.0, labels normal/nsfw). An
image's NSFW probability is the sum of the probabilities of the labels IMAGINE_NSFW_LABELS
names, so models with several unsafe classes (porn, hentai, sexy) count them all.

The worker process holds one classifier (`SafetyModel`, kept by its Engine beside the
diffusion models), loaded on first use or at warm-up on the engine's device and dtype.
A job's images are classified in one batched forward pass, on the finishing thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from generator.errors import ModelError, first_line
from settings.i18n import N_, _

ADVICE = (N_("point IMAGINE_NSFW_MODEL at a transformers image-classification model (a folder, "
             "or a hub id such as Falconsai/nsfw_image_detection, downloaded beforehand when "
             "the worker is offline), or unset it"))


class NsfwClassifier:
    """One image-classification model on a device, and which of its labels mean NSFW."""

    def __init__(self, source: str, labels: Sequence[str], device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.source = source
        self.model, self.processor = _load(source)
        self.indices = nsfw_indices(self.model.config.id2label, labels)
        if not self.indices:
            known = ", ".join(str(v) for v in self.model.config.id2label.values())
            raise ModelError(
                _("IMAGINE_NSFW_MODEL={source} has the labels {known}, none of which is in "
                  "IMAGINE_NSFW_LABELS ({join}): name its unsafe labels there").format(
                    source=source, known=known, join=', '.join(labels)))
        self.device = device
        # The engine's dtype: half precision on a GPU, like the diffusion models.
        self.dtype = dtype
        try:
            self.model.to(device=torch.device(device), dtype=dtype).eval()
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ModelError(_("could not move IMAGINE_NSFW_MODEL={source} to {device}: "
                               "{first_line}").format(
                                 source=source, device=device, first_line=first_line(exc))) from exc

    @property
    def labels(self) -> list[str]:
        return [str(label) for label in self.model.config.id2label.values()]

    def classify(self, images: Sequence[Image.Image]) -> list[float]:
        """Each image's NSFW probability (0..1), in order, from one forward pass."""
        if not images:
            return []
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        with torch.inference_mode():
            inputs = self.processor(images=rgb, return_tensors="pt")
            pixels = inputs["pixel_values"].to(device=self.device, dtype=self.dtype)
            probabilities = self.model(pixel_values=pixels).logits.float().softmax(dim=-1)
            scores = probabilities[:, self.indices].sum(dim=-1).clamp(0.0, 1.0)
        return [float(score) for score in scores.cpu()]


class SafetyModel:
    """The classifier of one worker process: None when IMAGINE_NSFW_MODEL is unset, loaded
    once (the first caller loads it, later ones wait and share it)."""

    def __init__(self, source: str | None, labels: Sequence[str], device: str,
                 dtype: torch.dtype) -> None:
        self.source = source
        self.labels = tuple(labels)
        self.device = device
        self.dtype = dtype
        self._classifier: NsfwClassifier | None = None
        self._lock = threading.Lock()

    def get(self) -> NsfwClassifier | None:
        if self.source is None:
            return None
        with self._lock:
            if self._classifier is None:
                self._classifier = NsfwClassifier(self.source, self.labels, self.device,
                                                  self.dtype)
            return self._classifier


def nsfw_indices(id2label: dict[Any, Any], labels: Sequence[str]) -> list[int]:
    """The class indices whose label is one of `labels`, compared case-insensitively."""
    wanted = {label.strip().lower() for label in labels}
    return sorted(int(index) for index, label in id2label.items()
                  if str(label).strip().lower() in wanted)


def _load(source: str) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoModelForImageClassification  # noqa: PLC0415

    try:
        model = AutoModelForImageClassification.from_pretrained(source)
        processor = AutoImageProcessor.from_pretrained(source)
    except Exception as exc:  # missing, offline, not a classifier: the operator must act
        raise ModelError(_("could not load IMAGINE_NSFW_MODEL={source} ({first_line}): {advice}").format(
                             source=source, first_line=first_line(exc), advice=_(ADVICE))) from exc
    return model, processor
