"""The Convai manifest section: custom LLMs (`models`) and the characters that
use them, in the Convai API's own field names."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ...manifest import (CommonSettings, HttpUrl, LoadedManifest, Name, Strict, check_references,
                         env_var, index_unique, secret_reference)
from ..base import Desired, DesiredConsumer, DesiredModel
from .builtins import builtin_models

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class Settings(CommonSettings):
    api_dialect: Literal["auto", "llm-models", "custom-llm"] = Field(
        "auto", description="Which Custom LLM API to use; auto probes llm-models, then custom-llm.")
    builtin_models: list[Name] = Field(default_factory=list, description="Extra built-in model "
                                       "codes Convai added after this release.")


class ModelSpec(Strict):
    model_group_name: Name = Field(description="The model's identity; unique, not a built-in "
                                   "code, and it cannot be renamed (a new name is a new model).")
    model_name: Name = Field(description="The model name your OpenAI-compatible endpoint serves.")
    base_url: HttpUrl = Field(DEFAULT_BASE_URL, description="The endpoint's OpenAI-compatible base URL.")
    api_key: secret_reference("CONVAI_API_KEY") = Field(
        description="Only a ${ENV_VAR} reference; the key is read from that "
                         "environment variable at apply time.")
    api_key_version: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Bump it to send a rotated key (the API never returns keys).")
    display_name: Name | None = Field(None, description="Shown in Convai; unique per account.")
    is_uncensored: bool = Field(False, description="As in the Convai API.")
    protect: bool = Field(False, description="true: refuse any plan that would replace this model.")



    @property
    def api_key_var(self) -> str:
        return env_var(self.api_key)


class CharacterSpec(Strict):
    char_id: Name = Field(description="The Convai character ID (charID).")
    model_group_name: Name = Field(description="A model from models, or a built-in model code.")
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        None, description="0..1; absent means leave the character's temperature as it is.")


class Manifest(Strict):
    version: Literal[1] = Field(description="The manifest format version; must be 1.")
    platform: Literal["convai"] = Field("convai", description="Convai (the default).")
    settings: Settings = Field(default_factory=Settings, description="All optional.")
    models: list[ModelSpec] = Field(default_factory=list, description="The account's custom LLMs.")
    characters: list[CharacterSpec] = Field(default_factory=list, description="Which model (and "
                                            "temperature) each listed character uses.")

    def builtins(self) -> frozenset[str]:
        return builtin_models() | frozenset(self.settings.builtin_models)


SECTIONS: dict[tuple[str, ...], type] = {
    (): Manifest, ("settings",): Settings, ("models",): ModelSpec, ("characters",): CharacterSpec,
}


def desired(loaded: LoadedManifest) -> Desired:
    m: Manifest = loaded.manifest
    models = [DesiredModel(spec.model_group_name, _model_fields(spec), (spec.api_key_var,),
                           loaded.where("models", i), spec.api_key_version, spec.protect)
              for i, spec in enumerate(m.models)]
    consumers = [DesiredConsumer(c.char_id, c.model_group_name,
                                 {} if c.temperature is None else {"temperature": c.temperature},
                                 loaded.where("characters", i))
                 for i, c in enumerate(m.characters)]
    s = m.settings
    return Desired("convai", models, consumers, s.prune, s.fallback_model,
                   loaded.where("settings", "fallback_model"), s.max_deregister, m.builtins(),
                   variant=s.api_dialect)


def _model_fields(spec: ModelSpec) -> dict[str, Any]:
    out = {"model_name": spec.model_name, "base_url": spec.base_url,
           "display_name": spec.display_name, "is_uncensored": spec.is_uncensored}
    return {k: v for k, v in out.items() if v is not None}


def cross_check(loaded: LoadedManifest) -> list[str]:
    """Checks that span several objects: uniqueness and references."""
    m, where = loaded.manifest, loaded.where
    builtins = m.builtins()
    groups, problems = index_unique(loaded, "models", "model_group_name",
                                    "each model must be listed once")
    problems += [f"{where('models', i, 'model_group_name')}: model_group_name '{spec.model_group_name}' "
                 "is a built-in model code; choose another name for your custom model"
                 for i, spec in enumerate(m.models) if spec.model_group_name in builtins]
    display: dict[str, int] = {}
    for i, model in enumerate(m.models):
        if model.display_name is not None and model.display_name in display:
            problems.append(f"{where('models', i, 'display_name')}: display_name "
                            f"'{model.display_name}' is also used by models[{display[model.display_name]}]; "
                            "Convai requires display names to be unique per account")
        if model.display_name is not None:
            display.setdefault(model.display_name, i)
    problems += index_unique(loaded, "characters", "char_id", "list each character once")[1]
    problems += check_references(loaded, "characters", "model_group_name", set(groups) | builtins)
    return problems
