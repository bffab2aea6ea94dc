"""A tiny super-resolution model with random weights, for tests and offline trials.

It is a real-ESRGAN "compact" network (SRVGGNetCompact, the architecture of
realesr-general-x4v3 and many community 2× models) with very few features, saved as
`.safetensors` in the original key layout (`body.N.weight`), so spandrel recognises it from
its weights exactly as it recognises a downloaded model. The network adds its output to a
nearest-neighbour enlargement of the input; the last layer's weights are scaled down so the
result stays close to that enlargement instead of noise.
"""

from __future__ import annotations

from pathlib import Path

UPSCALER_FILE_NAME = "upscaler.safetensors"
SCALE = 2
_FEATURES = 8
_CONVOLUTIONS = 2
_LAST_LAYER_GAIN = 0.05


def build_tiny_upscaler(path: Path, *, seed: int = 0, scale: int = SCALE) -> Path:
    """Write the tiny `scale`× upscaler to `path` (a .safetensors file) and return it."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        network = Compact(num_in_ch=3, num_out_ch=3, num_feat=_FEATURES,
                          num_conv=_CONVOLUTIONS, upscale=scale)
    finally:
        torch.random.set_rng_state(generator_state)
    state = {key: value.detach().clone().contiguous() for key, value in network.state_dict().items()}
    last = max(int(key.split(".")[1]) for key in state)
    state[f"body.{last}.weight"] *= _LAST_LAYER_GAIN
    state[f"body.{last}.bias"] *= _LAST_LAYER_GAIN
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path
