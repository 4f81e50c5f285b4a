"""The output schema: one pydantic model validates every result and generates the
``responseJsonSchema`` sent with every request (one source of truth).

``[gemini] output_schema = "module:Class"`` selects it; the module is imported with the config
file's folder on ``sys.path``, so a schema can live next to the config.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from commands.errors import ConfigError


class LabelledValue(BaseModel):
    """A form field or table cell: what is printed next to it, and its value."""

    model_config = ConfigDict(extra="forbid")

    label: str
    value: str


class PageExtraction(BaseModel):
    """The built-in default: a faithful transcription of one page with its structured fields."""

    model_config = ConfigDict(extra="forbid")

    page_number: int | None = Field(description="The page number printed on the page, if any.")
    document_type: str = Field(description="e.g. 'transcript', 'report card', 'yearbook'.")
    title: str | None = Field(description="The page's heading, if any.")
    text: str = Field(description="Every word on the page, in reading order.")
    fields: list[LabelledValue] = Field(description="Labelled values (names, dates, grades).")


def load_schema(spec: str, config_dir: Path | None = None) -> type[BaseModel]:
    """Import ``module:Class`` and check it is a pydantic model that can produce the JSON schema
    every request carries (so a run refuses it before ``RunStarted``); errors name the config
    key."""
    module_name, _, class_name = spec.partition(":")
    if config_dir is not None and str(config_dir) not in sys.path:
        sys.path.insert(0, str(config_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(
            f"[gemini] output_schema: cannot import module {module_name!r} "
            f"({type(e).__name__}: {e})"
        ) from None
    model = getattr(module, class_name, None)
    if model is None:
        raise ConfigError(f"[gemini] output_schema: module {module_name!r} has no {class_name!r}")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigError(f"[gemini] output_schema: {spec!r} is not a pydantic model class")
    try:
        response_json_schema(model)
    except Exception as e:  # e.g. PydanticInvalidForJsonSchema for a Callable field
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(
            f"[gemini] output_schema: {spec!r} cannot produce a JSON schema "
            f"({type(e).__name__}: {first})"
        ) from None
    return model


def response_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema sent as ``generationConfig.responseJsonSchema``."""
    return model.model_json_schema()
