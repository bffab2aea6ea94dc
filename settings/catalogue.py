"""The model catalogue: what IMAGINE_MODELS says about each model besides where it is.

An entry is a source (hub id, folder or checkpoint file) or an object:
`{"source": "stabilityai/sd-turbo", "family": "sd21", "description": "fast drafts",
"defaults": {"steps": 2, "cfg": 0}, "triggers": []}`. A `default` entry may leave out its
source: it describes IMAGINE_MODEL.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Base-model families: which LoRAs and ControlNets fit a model. None: detected at load.
FAMILIES: tuple[str, ...] = ("sd15", "sd21", "sdxl", "sd3", "flux")


class ModelDefaults(BaseModel):
    """What a model draws with when the user does not say: `--model turbo` → 2 steps, cfg 0."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int | None = Field(default=None, ge=1, le=500)
    cfg: float | None = Field(default=None, ge=0.0, le=30.0)
    sampler: str | None = None
    size: int | None = Field(default=None, ge=64, le=4096)
    negative: str | None = None


class ModelEntry(BaseModel):
    """One model of IMAGINE_MODELS."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = None
    family: str | None = None
    description: str = ""
    defaults: ModelDefaults = ModelDefaults()
    triggers: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_source(cls, value: Any) -> Any:
        # A plain string is the source alone, as IMAGINE_MODELS was before the catalogue.
        return {"source": value} if isinstance(value, str) else value
