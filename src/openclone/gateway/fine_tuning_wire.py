"""The fine-tuning jobs API's request shape, and its translation to a :class:`FineTuneRequest`.

Hyperparameters come either at the top level (``hyperparameters``, the older form) or
under ``method = {"type": "supervised", "supervised": {"hyperparameters": ...}}``.
OpenClone trains supervised LoRA only: other methods (``dpo``, ``reinforcement``),
integrations and any field it does not know are refused with ``unsupported_parameter``
naming the field, never ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openclone.errors import InvalidRequestError, UnsupportedParameter
from openclone.jobs.fine_tuning import FineTuneRequest

__all__ = ["FineTuningJobCreate", "Hyperparameters"]

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    n_epochs: Auto | Annotated[int, Field(ge=1, le=50)] | None = None
    batch_size: Auto | Annotated[int, Field(ge=1, le=256)] | None = None
    learning_rate_multiplier: Auto | Annotated[float, Field(gt=0, le=10)] | None = None


class FineTuningJobCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, max_length=64)
    suffix: str | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    hyperparameters: Hyperparameters | None = None
    method: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    integrations: list[Any] | None = None

    def to_request(self) -> FineTuneRequest:
        """The library's request; raises for what OpenClone does not do."""
        for name in self.model_extra or {}:
            raise UnsupportedParameter(f"Unknown parameter: '{name}'.", param=name)
        if self.integrations:
            raise UnsupportedParameter(
                "integrations are not supported: OpenClone reports a job's metrics as its "
                "events and its results file",
                param="integrations",
            )
        _check_metadata(self.metadata)
        hyper = self._hyperparameters()

        def value(name: str) -> Any:
            given = getattr(hyper, name)
            return None if given == "auto" else given

        return FineTuneRequest(
            model=self.model, training_file=self.training_file,
            validation_file=self.validation_file, suffix=self.suffix, seed=self.seed,
            n_epochs=value("n_epochs"), batch_size=value("batch_size"),
            learning_rate_multiplier=value("learning_rate_multiplier"), metadata=self.metadata,
        )  # fmt: skip

    def _hyperparameters(self) -> Hyperparameters:
        top = self.hyperparameters
        if self.method is None:
            return _checked(top or Hyperparameters(), "hyperparameters")
        kind = self.method.get("type")
        if kind in ("dpo", "reinforcement"):
            raise UnsupportedParameter(
                f"method type '{kind}' is not supported: OpenClone fine-tunes with supervised "
                "LoRA ('supervised')",
                param="method.type",
            )
        if kind != "supervised":
            raise InvalidRequestError(
                f"Invalid value for 'method.type': {kind!r}; expected 'supervised'.",
                param="method.type",
            )
        for name in set(self.method) - {"type", "supervised"}:
            raise UnsupportedParameter(
                f"Unknown parameter: 'method.{name}'.", param=f"method.{name}"
            )
        supervised = self.method.get("supervised") or {}
        if not isinstance(supervised, dict):
            raise InvalidRequestError(
                "'method.supervised' must be an object", param="method.supervised"
            )
        for name in set(supervised) - {"hyperparameters"}:
            where = f"method.supervised.{name}"
            raise UnsupportedParameter(f"Unknown parameter: '{where}'.", param=where)
        where = "method.supervised.hyperparameters"
        try:
            hyper = Hyperparameters.model_validate(supervised.get("hyperparameters") or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"][:1])
            raise InvalidRequestError(
                f"Invalid value for '{where}.{field}': {first['msg']}.", param=f"{where}.{field}"
            ) from None
        if top is not None and top.model_fields_set:
            raise InvalidRequestError(
                "Give hyperparameters once: in 'method.supervised.hyperparameters' (or the "
                "older 'hyperparameters'), not both.",
                param="hyperparameters",
            )
        return _checked(hyper, where)


def _checked(hyper: Hyperparameters, where: str) -> Hyperparameters:
    for name in hyper.model_extra or {}:
        raise UnsupportedParameter(
            f"hyperparameter '{name}' is not supported; supervised fine-tuning takes n_epochs, "
            "batch_size and learning_rate_multiplier",
            param=f"{where}.{name}",
        )
    return hyper


def _check_metadata(metadata: dict[str, str] | None) -> None:
    """OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512."""
    if not metadata:
        return
    if len(metadata) > 16:
        raise InvalidRequestError("metadata holds at most 16 pairs", param="metadata")
    for key, val in metadata.items():
        if len(key) > 64 or len(val) > 512:
            raise InvalidRequestError(
                "metadata keys are at most 64 characters and values at most 512",
                param=f"metadata.{key[:64]}",
            )
