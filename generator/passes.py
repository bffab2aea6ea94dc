"""One diffusion pass, whatever asked for it: the ControlNet, embeddings, LoRAs and prompt
weights a request brings are applied here, and nowhere else.

txt2img, img2img and every pass of an image operation (generator.operations' `draw`) come
through `draw`, so a LoRA or a weighted prompt means the same in an upscale's detail pass
as in the first image. A request without any of them runs the bare pipeline call with the
plain prompt, so its images stay byte-identical to what they were before these existed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from PIL import Image

from generator.errors import GenerationError, first_line
from generator.progress import CallbackError, Listener, Previews, StepReporter
from generator.request import ImageRequest
from generator.results import pipeline_images
from settings.errors import ImagineError
from settings.i18n import _

if TYPE_CHECKING:
    from generator.control import ControlNets

ProgressCallback = Callable[[int, int, "Image.Image | None"], None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Adapters:
    """What a worker offers on top of its models: IMAGINE_LORA_DIR, IMAGINE_EMBEDDINGS_DIR
    and the ControlNets of IMAGINE_CONTROLNETS (None: not configured)."""

    lora_dir: Path | None = None
    embeddings_dir: Path | None = None
    controls: ControlNets | None = None


def controlled_pass(
    pipe: Any,
    family: str,
    request: ImageRequest,
    adapters: Adapters,
    load_image: Callable[[str], Image.Image] | None,
) -> tuple[Any, dict[str, Any]]:
    """The ControlNet variant of `pipe` and its call arguments when the request has a
    control image; `pipe` itself and no arguments otherwise."""
    if request.control is None or request.control_image is None:
        return pipe, {}
    from generator.control import control_inputs, controlled  # noqa: PLC0415 - cv2, diffusers

    if adapters.controls is None:
        raise GenerationError(
            _("--cn {control} needs a ControlNet, and this worker has none: the operator sets "
              "IMAGINE_CONTROLNETS").format(control=request.control))
    if load_image is None:
        raise ValueError("a control image needs load_image")
    controlnet = adapters.controls.model(request.control, family)
    control_map = adapters.controls.control_map(
        request.control, load_image(request.control_image), request.width, request.height)
    variant = controlled(pipe, controlnet)
    return variant, control_inputs(variant, control_map, request.control_weight)


def draw(
    pipe: Any,
    request: ImageRequest,
    adapters: Adapters,
    notes: list[str],
    **inputs: Any,
) -> list[Image.Image]:
    """Run `pipe` for `request` with `inputs` (size, images, generators, callbacks), its
    embeddings loaded and its LoRAs active for this call only; what the prompt encoder had
    to tell the user (words dropped) is added to `notes`."""
    return guarded(request, lambda: _draw(pipe, request, adapters, notes, inputs))


def guarded(request: ImageRequest, run: Callable[[], _T], images: int | None = None) -> _T:
    """`run()`, its failures turned into what the user is told: a caller's callback's own
    exception unchanged, out of memory with what to ask for instead, anything else as a
    GenerationError naming the cause. `images`: how many the call draws (a batch's rows)."""
    try:
        return run()
    except CallbackError as exc:
        raise exc.original from None
    except ImagineError:
        raise
    except torch.cuda.OutOfMemoryError as exc:
        raise out_of_memory(request, images) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise out_of_memory(request, images) from exc
        raise GenerationError(_("generation failed: {exc}").format(exc=short(exc))) from exc
    except Exception as exc:
        raise GenerationError(_("generation failed: {exc}").format(exc=short(exc))) from exc


def load_embeddings(pipe: Any, request: ImageRequest, adapters: Adapters) -> None:
    """Load the embeddings of IMAGINE_EMBEDDINGS_DIR that the request's prompts name."""
    if adapters.embeddings_dir is not None:
        from generator import embeddings  # noqa: PLC0415
        from generator.library import embedding_files  # noqa: PLC0415

        embeddings.ensure_loaded(pipe, embedding_files(adapters.embeddings_dir),
                                 [request.prompt, request.negative_prompt])


def lora_block(pipe: Any, request: ImageRequest,
               adapters: Adapters) -> AbstractContextManager[object]:
    """The block inside which the request's LoRAs are active (nothing happens without any)."""
    if not request.loras:  # peft is imported by the first job that asks for a LoRA
        return nullcontext()
    from generator import loras  # noqa: PLC0415
    from generator.library import lora_files  # noqa: PLC0415

    return loras.applied(pipe, lora_files(adapters.lora_dir), request.loras)


def _draw(pipe: Any, request: ImageRequest, adapters: Adapters, notes: list[str],
          inputs: dict[str, Any]) -> list[Image.Image]:
    from generator import prompt_weights  # noqa: PLC0415 - compel

    load_embeddings(pipe, request, adapters)
    with lora_block(pipe, request, adapters):
        # Inside the block: a LoRA may change the text encoder the prompt is encoded with.
        encoded = prompt_weights.encode(pipe, request.prompt, request.negative_prompt)
        notes.extend(n for n in encoded.notes if n not in notes)
        return pipeline_images(pipe(**encoded.kwargs,
                                    num_inference_steps=request.num_inference_steps,
                                    guidance_scale=request.guidance_scale, **inputs))


def step_callback(on_progress: ProgressCallback | None,
                  should_cancel: Callable[[], bool] | None,
                  previews: Previews | None = None) -> dict[str, Any]:
    """The call argument that reports progress (with `previews` when given) and honours
    cancellation for one job; {} when neither is asked for."""
    if on_progress is None and should_cancel is None:
        return {}
    reporter = StepReporter([Listener(on_progress, should_cancel)], previews, alone=True)
    return {"callback_on_step_end": reporter}


def out_of_memory(request: ImageRequest, images: int | None = None) -> GenerationError:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    count = request.num_images if images is None else images
    return GenerationError(
        _("out of GPU memory drawing {count} × {width}x{height}: ask for a smaller size or "
          "fewer images (--n), or set IMAGINE_DTYPE=float16").format(
            count=count, width=request.width, height=request.height)
    )


def short(exc: BaseException) -> str:
    """The exception's type and first line: what a failed run tells the user."""
    return f"{type(exc).__name__}: {first_line(exc)}"
