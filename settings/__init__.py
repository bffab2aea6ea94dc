"""One typed settings object, read from the environment and `.env` at the edge.

Only entry points (the CLI, `create_app`, worker start-up) call `load_settings()`; everything
else receives a `Settings` instance. Invalid values stop start-up with a message naming the
variable, the value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from settings.catalogue import ModelEntry, check_catalogue
from settings.errors import ConfigError
from settings.governance import GovernanceSettings
from settings.language import LanguageSettings

DEFAULT_MODEL_HINT = "stabilityai/sd-turbo"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "imagine"


def _env(name: str) -> Any:
    """A field read from an unprefixed variable (Slack's and Discord's usual names)."""
    return AliasChoices(name, name.lower())


class Settings(GovernanceSettings, LanguageSettings, BaseSettings):
    """Everything configurable; the variable names are public (README, Configuration). The
    policy fields are in settings/governance.py, the language fields in settings/language.py."""

    model_config = SettingsConfigDict(
        env_prefix="IMAGINE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # Infrastructure
    redis_url: str | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    storage_dir: Path | None = None
    public_url: str = "http://localhost:8080"
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=1, le=65535)
    web_threads: int = Field(default=16, ge=1, le=512)

    # The model and where it runs
    model: str = DEFAULT_MODEL_HINT
    # The catalogue: name → source, or an entry with defaults (settings/catalogue.py).
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    # auto, cpu, mps, cuda or cuda:N (one GPU of several).
    device: str = "auto"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    torch_threads: int | None = Field(default=None, ge=1, le=1024)

    # Defaults and limits of the prompt grammar
    default_size: int = Field(default=512, ge=64, le=4096)
    size_multiple: int = Field(default=8, ge=8, le=128)
    default_steps: int = Field(default=25, ge=1, le=500)
    default_cfg: float = Field(default=7.0, ge=0.0, le=30.0)
    # Checked against the generator's samplers where the grammar's Limits are built.
    default_sampler: str = "euler"
    max_steps: int = Field(default=50, ge=1, le=500)
    max_pixels: int = Field(default=1024 * 1024, ge=64 * 64)
    max_images: int = Field(default=4, ge=1, le=16)
    max_prompt_length: int = Field(default=1000, ge=10, le=100_000)
    # Upscale buttons make each side of an image this many times longer, up to their own pixel
    # limit: a super-resolution model runs in tiles, so it goes far beyond what one
    # generation may draw (IMAGINE_MAX_PIXELS).
    upscale_factor: int = Field(default=2, ge=2, le=4)
    max_upscale_pixels: int = Field(default=4096 * 4096, ge=64 * 64)
    # LoRAs (.safetensors, kohya or diffusers layout) and textual-inversion embeddings
    # (.safetensors/.pt/.bin): each folder is the allowlist, a file's stem is its name.
    lora_dir: Path | None = None
    embeddings_dir: Path | None = None
    # ControlNet kind → source (hub id or folder), or kind → {family → source}.
    controlnets: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    # ControlNet kind → a transformers model that turns a photo into that kind's map
    # (depth: a depth-estimation model); kinds without one take the image as the map.
    annotators: dict[str, str] = Field(default_factory=dict)
    # Models a worker keeps loaded at once (least recently used evicted to CPU, then
    # dropped); IMAGINE_MODEL_MEMORY_GB caps them by size instead when set.
    max_loaded_models: int = Field(default=2, ge=1, le=64)
    model_memory_gb: float | None = Field(default=None, gt=0.0)
    # The models a generate worker serves (comma-separated names); unset: all of them.
    worker_models: Annotated[tuple[str, ...], NoDecode] = ()
    # GPU speed options, all off by default (unmeasured on a GPU here; no gain on the CPU).
    compile: bool = Field(default=False, description="torch.compile the UNet and VAE decoder, "
                          "warmed up at worker start")
    channels_last: bool = Field(default=False, description="UNet and VAE in channels_last")
    fuse_qkv: bool = Field(default=False, description="fuse attention QKV projections")
    vae_tiling: bool = Field(default=False, description="VAE tiling (above its tile size) "
                             "and slicing")
    # A super-resolution model file (.pth/.safetensors: Real-ESRGAN, 4x-UltraSharp, SwinIR, …)
    # for the Upscale buttons; unset: Lanczos plus a light detail pass.
    upscaler: Path | None = None

    # Queue
    max_queue: int = Field(default=100, ge=1)
    max_jobs_per_user: int = Field(default=3, ge=1)
    # Prompt-URL jobs (anonymous addresses, proxies such as GitHub's camo) share one pool
    # instead of the per-user limit, so they can never fill the queue; default half of it.
    max_web_jobs: int | None = Field(default=None, ge=1)
    job_ttl: int = Field(default=7 * 24 * 3600, ge=60, description="seconds a job record lives")
    job_timeout: int = Field(default=600, ge=10, description="longest a generation may run, s")
    # A delivery holds its job's lock this long at most: if its deliver worker dies midway,
    # the job's result goes out when the lock ends. Longer than any one delivery takes.
    delivery_lock_seconds: int = Field(default=120, ge=5, le=3600)
    visibility_timeout: int | None = Field(
        default=None, ge=1,
        description="s before a job of a vanished worker host is handed out again; "
        "default job_timeout + 60",
    )
    progress_interval: float = Field(default=2.0, ge=0.0, le=60.0)
    # Cross-job batching: a generate worker draws up to this many compatible jobs (same model,
    # LoRAs, size, steps, sampler, cfg, operation) in one pipeline call, chosen among the
    # next IMAGINE_BATCH_WINDOW waiting jobs only, so none overtakes more than that.
    max_batch: int = Field(default=4, ge=1, le=64)
    batch_window: int = Field(default=8, ge=1, le=256)
    # Live previews: every this many seconds a running job's latents become a small JPEG
    # (0: none). IMAGINE_PREVIEW_DECODER: a TAESD (AutoencoderTiny) folder or hub id for
    # every family, or family=source pairs (sd15=/m/taesd,sdxl=/m/taesdxl); unset: the
    # linear latent-to-RGB approximation.
    preview_interval: float = Field(default=1.0, ge=0.0, le=60.0)
    preview_decoder: str | None = None
    # --- fair scheduling (#14): fields below this line are the scheduler's -------------
    # Strict priority tiers by platform (lower first; tasks/core/scheduler.py), merged over
    # DEFAULT_PRIORITY: IMAGINE_PRIORITY=api=0,web=2 puts API and webhook jobs with chat.
    priority: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)

    # --- storage beyond one machine (#17) -------------------------------------------------
    # s3://bucket/prefix: images in an S3-compatible bucket (wins over IMAGINE_STORAGE_DIR);
    # credentials and region through boto3's standard chain.
    storage_url: str | None = None
    s3_endpoint: str | None = None  # MinIO and other S3-compatible servers: path-style
    s3_redirect: bool = False  # web: redirect to a presigned URL instead of streaming
    # Days since an image was last served or referenced before `imagine gc` deletes it;
    # unset: keep every image.
    image_retention: float | None = Field(default=None, gt=0.0)

    # Web
    url_secret: SecretStr | None = None
    api_token: SecretStr | None = None
    embed_wait: float = Field(default=3.0, ge=0.0, le=60.0)
    max_wait: float = Field(default=60.0, ge=0.0, le=600.0)
    rate_limit_per_minute: int = Field(default=30, ge=1)
    trust_forwarded_for: bool = False
    # One uploaded image; routes that take images accept two as data URLs plus JSON.
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    metrics_token: SecretStr | None = None
    # Vary (Region) links to the mask editor: one use each, for this many seconds.
    region_link_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    gallery: bool = False  # GET /gallery: recent prompt-URL images (off: 404)

    # Outbound requests to addresses users give (webhooks): public addresses only, except
    # hosts or networks the operator allows: IMAGINE_OUTBOUND_ALLOW=10.0.0.0/8,hooks.internal
    outbound_allow: Annotated[tuple[str, ...], NoDecode] = ()
    outbound_timeout: float = Field(default=10.0, gt=0.0, le=300.0,
                                    description="s for one whole request, redirects included")
    outbound_max_bytes: int = Field(default=1024 * 1024, ge=1024,
                                    description="bytes read of a webhook's reply at most")
    # HMAC-SHA256 key that signs webhook bodies (X-Imagine-Signature); unset: unsigned.
    webhook_secret: SecretStr | None = None
    webhook_concurrency: int = Field(default=4, ge=1, le=256,
                                     description="webhook posts at once per deliver process")

    # Slack
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(default=None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str = Field(
        default="https://slack.com/api/", validation_alias=_env("SLACK_API_URL")
    )
    # Slack user ids that moderate (cancel anyone's job) and administer imagine, besides the
    # workspace's admins and owners: IMAGINE_SLACK_ADMINS=U012AB3CD,U045EF6GH
    slack_admins: Annotated[frozenset[str], NoDecode] = frozenset()

    # Discord
    discord_token: SecretStr | None = Field(default=None, validation_alias=_env("DISCORD_TOKEN"))
    discord_api_url: str | None = Field(default=None, validation_alias=_env("DISCORD_API_URL"))
    discord_gateway_url: str | None = Field(
        default=None, validation_alias=_env("DISCORD_GATEWAY_URL")
    )
    discord_guild_id: int | None = Field(default=None, validation_alias=_env("DISCORD_GUILD_ID"))
    discord_attachment_limit: int = Field(
        default=10 * 1024 * 1024, ge=1024,
        description="bytes per upload; bigger images go as a JPEG preview plus a link",
    )
    discord_ready_timeout: float = Field(
        default=2.0, ge=0.0, le=60.0,
        description="s the bot waits for more guilds after the last one before it is ready",
    )

    @field_validator("public_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("url_secret", "api_token", "metrics_token", "slack_signing_secret",
                     "webhook_secret")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty secret would be "set" and protect nothing: refuse it rather than guess.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty: give a secret, or unset the variable to turn it off")
        return value

    @field_validator("slack_admins", mode="before")
    @classmethod
    def _user_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = dict(_tier_pair(part) for part in value.split(",") if part.strip())
        if isinstance(value, dict):
            for platform, tier in value.items():
                _tier_pair(f"{platform}={tier}")
        return value

    @field_validator("worker_models", mode="before")
    @classmethod
    def _worker_models(cls, value: Any) -> Any:
        # Names are checked against the catalogue at worker start (routing.served_models),
        # where the known ones can be listed.
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            names = [str(part).strip() for part in value]
            return tuple(dict.fromkeys(name for name in names if name))
        return value

    @field_validator("outbound_allow", mode="before")
    @classmethod
    def _outbound_allow(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple | set | frozenset):
            entries = [str(part).strip().lower().rstrip(".") for part in value]
            for entry in entries:
                _check_allow_entry(entry)
            return tuple(entry for entry in entries if entry)
        return value

    @field_validator("upscaler", mode="before")
    @classmethod
    def _upscaler_file(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        if not Path(value).is_file():
            raise ValueError("no such file: give the path of a super-resolution model "
                             "(.pth or .safetensors), or unset it")
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        check_catalogue(value)
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", value):
            raise ValueError("must be auto, cpu, mps, cuda or cuda:N (N: the GPU's index)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @cached_property
    def images_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "images"

    @property
    def web_jobs_limit(self) -> int:
        """IMAGINE_MAX_WEB_JOBS, or half of IMAGINE_MAX_QUEUE."""
        return self.max_web_jobs or max(1, self.max_queue // 2)

    @property
    def tiers(self) -> dict[str, int]:
        """Every platform's priority tier: DEFAULT_PRIORITY with IMAGINE_PRIORITY over it."""
        return {**DEFAULT_PRIORITY, **self.priority}

    @property
    def model_sources(self) -> dict[str, str]:
        """Allowed model names → hub id, folder or .safetensors file; `default` is IMAGINE_MODEL."""
        return {name: entry.source or self.model for name, entry in self.catalogue.items()}

    @property
    def catalogue(self) -> dict[str, ModelEntry]:
        """Every allowed model's entry, `default` (IMAGINE_MODEL) first."""
        default = self.models.get("default", ModelEntry())
        default = default.model_copy(update={"source": self.model})
        return {"default": default, **{k: v for k, v in self.models.items() if k != "default"}}


# Chat first (someone is watching), then the API and webhooks, then prompt-URL misses.
DEFAULT_PRIORITY = {"slack": 0, "discord": 0, "cli": 0, "api": 1, "webhook": 1, "web": 2}
MAX_TIER = 7  # tiers are 3 bits of a job's fair score


def _tier_pair(pair: str) -> tuple[str, int]:
    platform, _, tier = (part.strip() for part in pair.partition("="))
    if platform not in DEFAULT_PRIORITY or not re.fullmatch(r"[0-9]+", tier) \
            or int(tier) > MAX_TIER:
        raise ValueError(f"{pair.strip()!r}: give platform=tier pairs separated by commas, "
                         f"platforms {', '.join(DEFAULT_PRIORITY)}, tiers 0 (first) to "
                         f"{MAX_TIER}, e.g. api=0,web=2")
    return platform, int(tier)


def _check_allow_entry(entry: str) -> None:
    """A host name or an IP network (CIDR); anything else is a typo worth stopping for."""
    if not entry:
        return
    try:
        ipaddress.ip_network(entry, strict=False)
        return
    except ValueError:
        pass
    if not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", entry):
        raise ValueError(f"{entry!r} is neither a host name nor an IP network such as "
                         "10.0.0.0/8 (separate entries with commas)")


def _describe(error: ErrorDetails) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    info = Settings.model_fields.get(field)
    names = [f"IMAGINE_{field.upper()}" if info is not None else field.upper()]
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        names = [str(info.validation_alias.choices[0])]
    value = error.get("input")
    # Inside a JSON variable (IMAGINE_MODELS): which entry and key, e.g. ["turbo"].family.
    inner = "".join(f'["{part}"]' if isinstance(part, str) and i == 1 else f".{part}"
                    for i, part in enumerate(error.get("loc", ())[1:], start=1))
    return f"{names[0]}{inner}={value!r} is invalid: {error['msg']}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; raise ConfigError naming the bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(e) for e in exc.errors())) from None
    except SettingsError as exc:  # a JSON variable (IMAGINE_MODELS, …) that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"IMAGINE_{field.group(1).upper()}" if field else "A JSON variable"
        raise ConfigError(f"{name} is not valid JSON: give a JSON object, e.g. "
                          '{"name": "value"} (README, Configuration)') from None
