"""Optional speed-ups of a loaded pipeline: torch.compile, channels_last, fused QKV, VAE tiling.

All are off by default: none has been measured on a GPU here, and compilation adds a minute
or more to each worker's start (bench/speedups.py has the CPU figures). Each is applied once, when
a model is loaded; one that a pipeline lacks is skipped with a log line, never a failure,
because a worker serving several models may hold pipelines of different kinds.

Attention needs no option: diffusers on torch 2 already runs torch's
scaled_dot_product_attention (AttnProcessor2_0), which `attention_kind` reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeedOptions:
    """IMAGINE_COMPILE, IMAGINE_CHANNELS_LAST, IMAGINE_FUSE_QKV, IMAGINE_VAE_TILING, and the
    size of the warm-up generation that pays for compilation at worker start."""

    compile: bool = False
    channels_last: bool = False
    fuse_qkv: bool = False
    vae_tiling: bool = False
    warm_size: int = 512
    warm_steps: int = 2
    # torch.compile's backend; tests use "eager" to cover the wiring without minutes of codegen.
    compile_backend: str = "inductor"

    @classmethod
    def from_settings(cls, settings: Settings) -> SpeedOptions:
        return cls(compile=settings.compile, channels_last=settings.channels_last,
                   fuse_qkv=settings.fuse_qkv, vae_tiling=settings.vae_tiling,
                   warm_size=settings.default_size)

    @property
    def any(self) -> bool:
        return self.compile or self.channels_last or self.fuse_qkv or self.vae_tiling


def apply(pipe: Any, options: SpeedOptions) -> list[str]:
    """Apply `options` to `pipe` in place; the names of those applied. Compilation comes
    last so that it traces the fused, channels-last modules."""
    applied: list[str] = []
    if options.channels_last and _channels_last(pipe):
        applied.append("channels_last")
    if options.fuse_qkv and _fuse_qkv(pipe):
        applied.append("fuse_qkv")
    if options.vae_tiling and _vae_tiling(pipe):
        applied.append("vae_tiling")
    if options.compile and _compile(pipe, options):
        applied.append("compile")
    return applied


def _skip(pipe: Any, option: str, why: str) -> bool:
    log.info("speed option %s skipped for %s: %s", option, type(pipe).__name__, why)
    return False


def _denoiser(pipe: Any) -> torch.nn.Module | None:
    module = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    return module if isinstance(module, torch.nn.Module) else None


def _channels_last(pipe: Any) -> bool:
    modules = [m for m in (_denoiser(pipe), getattr(pipe, "vae", None))
               if isinstance(m, torch.nn.Module)]
    if not modules:
        return _skip(pipe, "channels_last", "it has no UNet or VAE")
    for module in modules:
        # Only 4-d weights (convolutions) change layout; the rest stay as they are.
        module.to(memory_format=torch.channels_last)
    return True


def _fuse_qkv(pipe: Any) -> bool:
    if not hasattr(pipe, "fuse_qkv_projections"):
        return _skip(pipe, "fuse_qkv", "the pipeline has no fuse_qkv_projections")
    try:
        pipe.fuse_qkv_projections()
    except (ValueError, AttributeError, NotImplementedError) as exc:
        # Added KV projections (some adapters) cannot be fused; the pipeline stays usable.
        return _skip(pipe, "fuse_qkv", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return True


def _vae_tiling(pipe: Any) -> bool:
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return _skip(pipe, "vae_tiling", "its VAE does not tile")
    # diffusers tiles only images larger than the VAE's tile (512 px for SD 1.x), so smaller
    # images decode exactly as before; slicing decodes a batch one image at a time.
    vae.enable_tiling()
    if hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    return True


def _compile(pipe: Any, options: SpeedOptions) -> bool:
    denoiser = _denoiser(pipe)
    if denoiser is None:
        return _skip(pipe, "compile", "it has no UNet or transformer")
    # In place (Module.compile), so the image-to-image and inpainting pipelines that share
    # these modules run the compiled ones too.
    denoiser.compile(backend=options.compile_backend)
    decoder = getattr(getattr(pipe, "vae", None), "decoder", None)
    if isinstance(decoder, torch.nn.Module):
        decoder.compile(backend=options.compile_backend)
    return True


def warm_up(pipe: Any, options: SpeedOptions) -> float:
    """One generation at the default size so that compilation happens now, not in the first
    user's job; its seconds. Nothing is done (0.0) unless compilation is on."""
    if not options.compile:
        return 0.0
    import time  # noqa: PLC0415 - only timing here

    began = time.perf_counter()
    generator = torch.Generator("cpu").manual_seed(0)
    pipe(prompt="warm-up", width=options.warm_size, height=options.warm_size,
         num_inference_steps=options.warm_steps, generator=generator, output_type="pil")
    seconds = time.perf_counter() - began
    log.info("compiled and warmed up %s at %d px in %.1f s", type(pipe).__name__,
             options.warm_size, seconds)
    return seconds


def attention_kind(pipe: Any) -> str:
    """The attention the denoiser runs: `sdpa` (torch's scaled_dot_product_attention), or
    the names of other processors."""
    denoiser = _denoiser(pipe)
    processors = getattr(denoiser, "attn_processors", None)
    if not processors:
        return "unknown"
    names = sorted({type(p).__name__ for p in processors.values()})
    sdpa = {"AttnProcessor2_0", "FusedAttnProcessor2_0"}
    return "sdpa" if set(names) <= sdpa else ",".join(names)


def describe(options: SpeedOptions, device: str, pipe: Any | None = None) -> str:
    """The start-up log line: every option on or off, and why they are off by default."""
    states = " ".join(f"{name}={'on' if getattr(options, name) else 'off'}"
                      for name in ("compile", "channels_last", "fuse_qkv", "vae_tiling"))
    attention = attention_kind(pipe) if pipe is not None else "sdpa (diffusers' default)"
    return (f"speed options on {device}: {states} attention={attention} "
            "(all off unless set: unmeasured on a GPU here)")
