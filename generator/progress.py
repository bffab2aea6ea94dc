"""Reports from inside the denoising loop: progress, cancellation and previews, per job.

One pipeline call may draw several jobs (generator.batch_draw); each job is a `Listener`
owning a run of rows of the batch. After every step each live listener hears
`on_progress(step, total, preview)` and is asked `should_cancel()`. A listener that cancels
(or whose callback raises) stops there and its rows are thrown away at the end; the others
go on, and the call stops only when no listener is left. A call for one job (`alone`)
raises at once, as a plain generation always has.

Previews: at most every `interval` seconds the current latents (diffusers passes them in
`callback_kwargs["latents"]`, the default of `callback_on_step_end_tensor_inputs` for the
Stable Diffusion and SDXL pipelines) of each listener's first row are decoded into a small
picture; between those, the preview is None.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from generator.errors import GenerationCancelled
from settings.i18n import _

if TYPE_CHECKING:
    from PIL import Image

    from generator.previews import PreviewMaker

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, "Image.Image | None"], None]


class CallbackError(Exception):
    """Carries an exception out of a caller's callback past the generic error wrapping."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


@dataclass
class Listener:
    """One job of a pipeline call: its callbacks, its first row, and why it stopped (None
    while it goes on)."""

    on_progress: ProgressCallback | None
    should_cancel: Callable[[], bool] | None
    first_row: int = 0
    stopped: BaseException | None = None


class Previews:
    """Decodes latents into previews, at most every `interval` seconds. The maker is asked
    for only when the first preview is due (a TAESD decoder loads then)."""

    def __init__(self, maker: Callable[[], PreviewMaker], interval: float) -> None:
        self._maker = maker
        self.interval = interval
        self._last = time.monotonic()
        self._failed = False

    def pictures(self, latents: Any, rows: Sequence[int]) -> list[Image.Image | None]:
        """One preview per row of `rows` when one is due, else Nones."""
        now = time.monotonic()
        if latents is None or not rows or self._failed or now - self._last < self.interval:
            return [None] * len(rows)
        self._last = now
        try:
            return list(self._maker().decode(latents[list(rows)]))
        except Exception:
            # A preview is a nicety: a decoder that fails must not fail the job.
            log.warning("previews are off for this run: decoding failed", exc_info=True)
            self._failed = True
            return [None] * len(rows)


class StepReporter:
    """diffusers' callback_on_step_end for one or more listeners.

    Cancelling raises out of the denoising loop instead of setting `pipe._interrupt`:
    with the flag, diffusers runs out the loop and still decodes the latents, which on a
    large image costs seconds of GPU time for a result nobody wants.
    """

    def __init__(self, listeners: Sequence[Listener], previews: Previews | None = None, *,
                 alone: bool = False) -> None:
        self.listeners = list(listeners)
        self.previews = previews
        self.alone = alone

    def __call__(
        self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        total = getattr(pipe, "num_timesteps", None) or step + 1
        live = [listener for listener in self.listeners if listener.stopped is None]
        pictures = self._pictures(callback_kwargs, live)
        for listener, picture in zip(live, pictures, strict=True):
            self._report(listener, step + 1, total, picture)
        if all(listener.stopped is not None for listener in self.listeners):
            if self.alone:
                raise self.listeners[0].stopped  # type: ignore[misc]
            raise GenerationCancelled(_("every job of the batch stopped after step {number}").format(
                                          number=step + 1))
        return callback_kwargs

    def _pictures(self, callback_kwargs: dict[str, Any],
                  live: list[Listener]) -> list[Image.Image | None]:
        wanted = [listener for listener in live if listener.on_progress is not None]
        if self.previews is None or not wanted:
            return [None] * len(live)
        decoded = self.previews.pictures(callback_kwargs.get("latents"),
                                         [listener.first_row for listener in wanted])
        by_listener = {id(listener): picture for listener, picture in zip(wanted, decoded,
                                                                          strict=True)}
        return [by_listener.get(id(listener)) for listener in live]

    def _report(self, listener: Listener, step: int, total: int,
                picture: Image.Image | None) -> None:
        try:
            if listener.on_progress is not None:
                listener.on_progress(step, total, picture)
            cancelled = listener.should_cancel is not None and listener.should_cancel()
        except Exception as exc:
            listener.stopped = CallbackError(exc) if self.alone else exc
            return
        if cancelled:
            listener.stopped = GenerationCancelled(_("cancelled after step {step} of {total}").format(
                                                       step=step, total=total))

