"""The model catalogue: what IMAGINE_MODELS says about each model besides where it is.

An entry is a source (hub id, folder or checkpoint file) or an object:
`{"source": "stabilityai/sd-turbo", "family": "sd21", "description": "fast drafts",
"defaults": {"steps": 2, "cfg": 0}, "triggers": []}`. A `default` entry may leave out its
source: it describes IMAGINE_MODEL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Base-model families: which LoRAs and ControlNets fit a model. None: detected at load.
FAMILIES: tuple[str, ...] = ("sd15", "sd21", "sdxl", "sd3", "flux")
# A name is typed after --model and names a worker queue: no spaces, no punctuation that
# chat clients or queue names would mangle.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DESCRIPTION_MAX = 200
TRIGGERS_MAX = 20


class ModelDefaults(BaseModel):
    """What a model draws with when the user does not say: `--model turbo` → 2 steps, cfg 0.

    `size` is the side of the default square (as IMAGINE_DEFAULT_SIZE): --ar keeps its area.
    The sampler is checked against the generator's samplers where the grammar's limits are
    built (bots/limits.py), as IMAGINE_DEFAULT_SAMPLER is: settings do not know samplers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int | None = Field(default=None, ge=1, le=500)
    cfg: float | None = Field(default=None, ge=0.0, le=30.0)
    sampler: str | None = None
    size: int | None = Field(default=None, ge=64, le=4096)
    negative: str | None = None

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, value: str | None) -> str | None:
        return value.strip().lower() if value is not None else None

    def given(self) -> dict[str, Any]:
        """Only the defaults the entry sets, e.g. {"steps": 2, "cfg": 0.0}."""
        return self.model_dump(exclude_none=True)


class ModelEntry(BaseModel):
    """One model of IMAGINE_MODELS."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = None
    family: str | None = None
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    defaults: ModelDefaults = ModelDefaults()
    triggers: tuple[str, ...] = Field(default=(), max_length=TRIGGERS_MAX)

    @model_validator(mode="before")
    @classmethod
    def _from_source(cls, value: Any) -> Any:
        # A plain string is the source alone, as IMAGINE_MODELS was before the catalogue.
        return {"source": value} if isinstance(value, str) else value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("source is empty: give a hub id, a folder or a checkpoint file")
        return value.strip() if value is not None else None

    @field_validator("family")
    @classmethod
    def _family(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.lower() not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, or left out "
                             "to detect it when the model loads")
        return value.lower()

    @field_validator("triggers")
    @classmethod
    def _triggers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # A blank trigger would show as an empty word in every listing.
        return tuple(word.strip() for word in value if word.strip())


def check_catalogue(models: Mapping[str, ModelEntry]) -> None:
    """The rules that need an entry's name: ValueError naming the entry and the rule."""
    for name, entry in models.items():
        if not MODEL_NAME.fullmatch(name):
            raise ValueError(f"model name {name!r} must be 1-64 letters, digits, '.', '_' or "
                             "'-', starting with a letter or digit")
        if name != "default" and entry.source is None:
            raise ValueError(f'models["{name}"] needs a source (a hub id, a folder or a '
                             'checkpoint file); only "default" may leave it out '
                             "(IMAGINE_MODEL is its source)")
