"""Annotators: models that turn a photo into a ControlNet's map (IMAGINE_ANNOTATORS).

Only depth has one: a transformers depth-estimation model (Intel/dpt-hybrid-midas,
depth-anything/Depth-Anything-V2-Small-hf, …), named by hub id or folder. Other kinds take
the user's image as the ready map, so the operator need not install an annotator for them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from generator.errors import ModelError, first_line
from settings.errors import ConfigError
from settings.i18n import _

# kind → the transformers pipeline task whose model draws that kind's map.
ANNOTATOR_TASKS: dict[str, str] = {"depth": "depth-estimation"}


class Annotators:
    """The configured annotators of one worker, each loaded on first use and kept."""

    def __init__(self, sources: Mapping[str, str], device: str) -> None:
        unknown = sorted(set(sources) - set(ANNOTATOR_TASKS))
        if unknown:
            raise ConfigError(
                f"IMAGINE_ANNOTATORS names {', '.join(unknown)}, which take the image as the ready "
                f"map: annotators exist for {', '.join(ANNOTATOR_TASKS)} only"
            )
        self._sources = dict(sources)
        self._device = device
        self._pipelines: dict[str, Any] = {}
        self._lock = threading.Lock()

    def has(self, kind: str) -> bool:
        return kind in self._sources

    def annotate(self, kind: str, image: Image.Image) -> Image.Image:
        """`kind`'s map of `image` (RGB, the annotator's own size: callers resize)."""
        with self._lock:
            if kind not in self._pipelines:
                self._pipelines[kind] = _load(kind, self._sources[kind], self._device)
            pipeline = self._pipelines[kind]
            # The lock also covers the call: a transformers pipeline is not thread-safe.
            result = pipeline(image)
        # "depth" is the prediction scaled to 0-255, near bright, as depth ControlNets expect.
        return result["depth"].convert("RGB")


def _load(kind: str, source: str, device: str) -> Any:
    from transformers import pipeline

    path = Path(source).expanduser()
    if source.startswith((".", "/", "~")) and not path.is_dir():
        raise ModelError(_("the {kind} annotator {source!r} is not a folder: fix "
                           "IMAGINE_ANNOTATORS").format(kind=kind, source=source))
    try:
        # float32 whatever the engine's dtype: annotators are small (tens of millions of
        # weights), so half precision would save little memory.
        task: Any = ANNOTATOR_TASKS[kind]  # a str; transformers' overloads want a literal
        return pipeline(task, model=str(path) if path.is_dir() else source, device=device)
    except OSError as exc:
        raise ModelError(
            _("could not load the {kind} annotator {source!r} ({first_line}): it is not in the "
              "local Hugging Face cache and the Hub is unreachable; download it and point "
              "IMAGINE_ANNOTATORS at the folder").format(
                kind=kind, source=source, first_line=first_line(exc))
        ) from exc
    except Exception as exc:
        raise ModelError(
            _("could not load the {kind} annotator {source!r}: {first_line} (it must be a "
              "transformers {ANNOTATOR_TASKS} model)").format(
                kind=kind, source=source, first_line=first_line(exc),
                ANNOTATOR_TASKS=ANNOTATOR_TASKS[kind])
        ) from exc
