"""Several jobs in one pipeline call: Engine.generate_batch.

The members share a batch_key (generator.batching): model, LoRA set, size, steps, sampler,
cfg, mode (and an image prompt's strength). A member asking for n images brings n rows;
every row has its own prompt, negative prompt, source image (img2img) and CPU generator
seeded seed+i, exactly as `Engine.generate` seeds them, and the call runs with
`num_images_per_prompt=1`. The LoRAs are applied once around the call; each member's
embeddings are loaded and its prompts encoded (generator.prompt_weights) inside that block.

Prompts: members whose prompts go to the pipeline as text (no weight syntax, at most 75
tokens) are passed as lists. Members whose prompts became embeddings (weights, BREAK,
long prompts) are concatenated along the batch when their tensors have the same shapes;
they are not padded, since padding a prompt with empty windows would change its image
from the one it gets alone. The members are therefore split into groups of combinable
encodings, one call per group; a member alone in its group is drawn on its own, through
`Engine.generate`, after the shared calls (correct, just not batched). On SDXL, "no
negative prompt" is drawn with zeros only when the whole call has none, so members with
and without a negative prompt form separate groups there.

Per member: progress and previews (generator.progress), cancellation (its rows are
thrown away at the end, the others go on; the call stops only when every member has
stopped), and failures: a member whose source image, embedding or prompt cannot be used
fails alone before the call, and when a shared call raises, each member still running is
drawn again on its own so only the one at fault gets the error.

Numbers: a row's pixels in a batch match those of the same job drawn alone closely, not
bit for bit (batched matrix products round differently in the last float bits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from generator.batching import BatchMember, BatchOutcome, batch_key
from generator.errors import GenerationCancelled
from generator.passes import guarded, load_embeddings, lora_block
from generator.png import parameters_text
from generator.progress import Listener, StepReporter
from generator.request import SEED_MAX, ImageRequest
from generator.results import GeneratedImage, pipeline_images
from generator.samplers import sampler_label
from settings.i18n import _

if TYPE_CHECKING:
    from generator.engine import Engine
    from generator.model_cache import LoadedModel

LoadImage = Callable[[str], Image.Image]


@dataclass
class _Row:
    """A member as it runs: its place in the batch, the request as it really runs (img2img
    steps), its seeds, its mode's inputs, its encoded prompts and notes."""

    index: int
    member: BatchMember
    request: ImageRequest
    seeds: list[int]
    inputs: dict[str, Any]
    listener: Listener
    encoded: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def draw_batch(engine: Engine, members: Sequence[BatchMember],
               load_image: LoadImage | None) -> list[BatchOutcome]:
    """One outcome per member, in order. Raises ValueError when the members do not share one
    batch_key (a request that is always drawn alone cannot share a call)."""
    if len(members) <= 1:
        return [_alone(engine, member, load_image) for member in members]
    keys = {batch_key(member.request) for member in members}
    if len(keys) != 1 or None in keys:
        raise ValueError("generate_batch needs members with one batch_key (not None); got "
                         f"{len(keys)} different keys")
    return _Batch(engine, members, load_image).run()


class _Batch:
    def __init__(self, engine: Engine, members: Sequence[BatchMember],
                 load_image: LoadImage | None) -> None:
        self.engine = engine
        self.members = list(members)
        self.load_image = load_image
        self.outcomes: list[BatchOutcome | None] = [None] * len(members)
        self.solo: list[_Row] = []  # drawn alone once the shared calls are done

    def run(self) -> list[BatchOutcome]:
        try:
            model = self.engine._model(self.members[0].request.model, self._say)
        except Exception as exc:
            return [BatchOutcome(error=exc) for _ in self.members]
        pipe, rows = self._prepare(model)
        if rows:
            self.engine._use_sampler(model, pipe, rows[0].request.sampler)
            adapters = self.engine.adapters
            rows = [row for row in rows
                    if self._settle(row, partial(load_embeddings, pipe, row.request, adapters))]
        if rows:
            self._draw_groups(model, pipe, rows)
        for row in self.solo:
            self.outcomes[row.index] = _alone(self.engine, row.member, self.load_image)
        return [outcome or BatchOutcome(error=RuntimeError("no outcome"))
                for outcome in self.outcomes]

    def _say(self, text: str) -> None:
        for member in self.members:
            if member.on_status is not None:
                member.on_status(text)

    def _settle(self, row: _Row, step: Callable[[], object]) -> bool:
        """Run `step` for `row`; False (and the row's outcome set) when it failed."""
        try:
            step()
        except Exception as exc:
            self.outcomes[row.index] = BatchOutcome(error=exc)
            return False
        return True

    def _prepare(self, model: LoadedModel) -> tuple[Any, list[_Row]]:
        pipe: Any = None
        rows = []
        for index, member in enumerate(self.members):
            try:
                pipe, row = self._row(model, index, member)
            except Exception as exc:
                self.outcomes[index] = BatchOutcome(error=exc)
                continue
            rows.append(row)
        return pipe, rows

    def _row(self, model: LoadedModel, index: int, member: BatchMember) -> tuple[Any, _Row]:
        request = member.request
        if request.seed is None:
            raise ValueError("request.seed is None: pass request.seeded()")
        if member.should_cancel is not None and member.should_cancel():
            raise GenerationCancelled(_("cancelled before it started"))
        seeds = [(request.seed + i) % (SEED_MAX + 1) for i in range(request.num_images)]
        pipe, request, inputs = self.engine._prepare(model, request, self.load_image)
        listener = Listener(member.on_progress, member.should_cancel)
        return pipe, _Row(index, member, request, seeds, inputs, listener)

    def _draw_groups(self, model: LoadedModel, pipe: Any, rows: list[_Row]) -> None:
        from generator import prompt_weights  # noqa: PLC0415 - compel

        def encode(row: _Row) -> None:
            encoded = prompt_weights.encode(pipe, row.request.prompt, row.request.negative_prompt)
            row.encoded, row.notes = encoded.kwargs, encoded.notes

        try:
            with lora_block(pipe, rows[0].request, self.engine.adapters):
                # Inside the block: a LoRA may change the text encoder.
                rows = [row for row in rows if self._settle(row, partial(encode, row))]
                for group in _groups(pipe, rows):
                    if len(group) == 1:
                        self.solo.extend(group)
                    else:
                        self._shared_call(model, pipe, group)
        except Exception:
            # The LoRAs themselves failed: each member alone says which error is its own.
            self.solo.extend(row for row in rows if self.outcomes[row.index] is None
                             and row not in self.solo)

    def _shared_call(self, model: LoadedModel, pipe: Any, group: list[_Row]) -> None:
        first = group[0].request
        offset = 0
        for row in group:
            row.listener.first_row = offset
            offset += len(row.seeds)
        generators = [torch.Generator("cpu").manual_seed(s) for row in group for s in row.seeds]
        inputs = dict(group[0].inputs)
        if "image" in inputs:
            inputs["image"] = [row.inputs["image"] for row in group for _ in row.seeds]
        listeners = [row.listener for row in group]
        if any(lst.on_progress or lst.should_cancel for lst in listeners):
            inputs["callback_on_step_end"] = StepReporter(listeners, self.engine.previews(model))
        try:
            images = guarded(first, lambda: pipeline_images(pipe(
                **_combined(group), num_inference_steps=first.num_inference_steps,
                guidance_scale=first.guidance_scale, num_images_per_prompt=1,
                generator=generators, **inputs)), images=len(generators))
        except Exception:
            # Every member stopped (cancelled), or the call failed: then each member still
            # going is drawn alone, so only the one at fault gets the error.
            for row in group:
                if row.listener.stopped is not None:
                    self.outcomes[row.index] = BatchOutcome(error=row.listener.stopped)
                else:
                    self.solo.append(row)
            return
        self._split(model, group, images)

    def _split(self, model: LoadedModel, group: list[_Row], images: list[Image.Image]) -> None:
        label = sampler_label(group[0].request.sampler)
        for row in group:
            start = row.listener.first_row
            if row.listener.stopped is not None:
                self.outcomes[row.index] = BatchOutcome(error=row.listener.stopped)
                continue
            results = []
            for image, seed in zip(images[start:start + len(row.seeds)], row.seeds, strict=True):
                text = parameters_text(row.request, seed, model.label, sampler_label=label)
                results.append(GeneratedImage(None, seed, image.width, image.height, text,
                                              row.notes, image=image))
            self.outcomes[row.index] = BatchOutcome(images=results)


def _alone(engine: Engine, member: BatchMember, load_image: LoadImage | None) -> BatchOutcome:
    """`member` drawn by Engine.generate, its error kept in the outcome."""
    try:
        return BatchOutcome(images=engine.generate(
            member.request, on_progress=member.on_progress, should_cancel=member.should_cancel,
            load_image=load_image, on_status=member.on_status))
    except Exception as exc:
        return BatchOutcome(error=exc)


def _groups(pipe: Any, rows: list[_Row]) -> list[list[_Row]]:
    """`rows` split into groups whose encoded prompts can go into one call, in order."""
    zeros = bool(getattr(getattr(pipe, "config", None), "force_zeros_for_empty_prompt", False))
    groups: dict[tuple[Any, ...], list[_Row]] = {}
    for row in rows:
        groups.setdefault(_signature(row.encoded, zeros), []).append(row)
    return list(groups.values())


def _signature(encoded: dict[str, Any], zeros: bool) -> tuple[Any, ...]:
    if "prompt" in encoded:
        # Without zeros for "no negative prompt", diffusers draws None as "".
        return ("text", zeros and encoded.get("negative_prompt") is None)
    return ("embeddings", *sorted((key, tuple(value.shape)) for key, value in encoded.items()
                                  if value is not None))


def _combined(group: list[_Row]) -> dict[str, Any]:
    """The call's prompt arguments: one row per image of every member."""
    if "prompt" in group[0].encoded:
        prompts = [row.encoded["prompt"] for row in group for _ in row.seeds]
        negatives = [row.encoded.get("negative_prompt") for row in group for _ in row.seeds]
        if all(negative is None for negative in negatives):
            return {"prompt": prompts, "negative_prompt": None}
        return {"prompt": prompts, "negative_prompt": [n or "" for n in negatives]}
    keys = [key for key, value in group[0].encoded.items() if value is not None]
    return {key: torch.cat([row.encoded[key] for row in group for _ in row.seeds])
            for key in keys}
