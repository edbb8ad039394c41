"""The LangBot manifest section: LLM models and the pipelines that use them,
in LangBot's own field names (`name` is the upstream model id, as in its API).

LangBot names are not unique and uuids are assigned by the server, so a model's
identity in the manifest is its `key` (default: its `name`), which pipelines
refer to. convai-sync maps keys to uuids itself (see client.py)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ...manifest import (CommonSettings, HttpUrl, LoadedManifest, Name, Strict, check_references,
                         env_var, index_unique, secret_reference)
from ..base import Desired, DesiredConsumer, DesiredModel

DEFAULT_REQUESTER = "openai-chat-completions"
Key = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^@\s]+$")]
Uuid = Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{36}$")]
ABILITIES = ("func_call", "vision", "reasoning")


class LangBotSettings(CommonSettings):
    pass


class LangBotModel(Strict):
    key: Key | None = Field(None, description="This manifest's name for the model (pipelines refer "
                            "to it); never sent to LangBot. Default: name. No '@' or spaces.")
    name: Name = Field(description="The upstream model id (LangBot's `name`; sent as `model` to "
                       "the provider).")
    requester: Name = Field(DEFAULT_REQUESTER, description="LangBot's provider requester.")
    base_url: HttpUrl = Field(description="The provider's OpenAI-compatible base URL.")
    api_keys: list[secret_reference("LANGBOT_API_KEY")] = Field(
        min_length=1, description="The provider's keys, each only as a "
                                "${ENV_VAR} reference.")
    abilities: list[Literal["func_call", "vision", "reasoning"]] = Field(
        default_factory=list, description="func_call, vision, reasoning.")
    extra_args: dict[str, Any] = Field(default_factory=dict, description="Merged into every "
                                       "request body (LangBot keeps temperature here).")
    context_length: Annotated[int, Field(ge=1)] | None = Field(None, description="The context "
                                                               "window; absent = leave as it is.")
    uuid: Uuid | None = Field(None, description="Pin this entry to one live model (only needed "
                              "when several live models share the name and base_url).")
    protect: bool = Field(False, description="true: refuse any plan that would delete this model.")



    @property
    def identity(self) -> str:
        return self.key or self.name


class LangBotPipeline(Strict):
    uuid: Uuid = Field(description="The pipeline's uuid (LangBot assigns it).")
    model: Name = Field(description="The key of a model in models.")


class LangBotManifest(Strict):
    version: Literal[1] = Field(description="The manifest format version; must be 1.")
    platform: Literal["langbot"] = Field(description="LangBot.")
    settings: LangBotSettings = Field(default_factory=LangBotSettings, description="All optional.")
    models: list[LangBotModel] = Field(default_factory=list, description="The LLM models.")
    pipelines: list[LangBotPipeline] = Field(default_factory=list, description="Which model each "
                                             "listed pipeline uses.")


SECTIONS: dict[tuple[str, ...], type] = {
    (): LangBotManifest, ("settings",): LangBotSettings, ("models",): LangBotModel,
    ("pipelines",): LangBotPipeline,
}


def model_fields(spec: LangBotModel) -> dict[str, Any]:
    out = {"name": spec.name, "requester": spec.requester, "base_url": spec.base_url.rstrip("/"),
           "abilities": list(spec.abilities), "extra_args": dict(spec.extra_args),
           "context_length": spec.context_length}
    return {k: v for k, v in out.items() if v is not None}


def desired(loaded: LoadedManifest) -> Desired:
    m: LangBotManifest = loaded.manifest
    models = [DesiredModel(spec.identity, model_fields(spec), tuple(env_var(k) for k in spec.api_keys),
                           loaded.where("models", i), None, spec.protect, spec.uuid)
              for i, spec in enumerate(m.models)]
    consumers = [DesiredConsumer(p.uuid, p.model, {}, loaded.where("pipelines", i))
                 for i, p in enumerate(m.pipelines)]
    s = m.settings
    return Desired("langbot", models, consumers, s.prune, s.fallback_model,
                   loaded.where("settings", "fallback_model"), s.max_deregister, variant="langbot")


def cross_check(loaded: LoadedManifest) -> list[str]:
    """Unique keys and pipelines, and references to models."""
    keys, problems = index_unique(
        loaded, "models", "key", "give one of them another `key:` (LangBot allows duplicate "
        "names, the manifest needs a unique key; the key defaults to the name)",
        value_of=lambda spec: spec.identity)
    problems += index_unique(loaded, "pipelines", "uuid", "list each pipeline once")[1]
    return problems + check_references(loaded, "pipelines", "model", set(keys), builtins=False)
