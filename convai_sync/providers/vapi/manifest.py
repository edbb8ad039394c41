"""The Vapi manifest section: custom-LLM credentials (`models`) and the
assistants that use them.

On Vapi a custom LLM is split in two: the key lives in a credential (which has
nothing else but a name), while the endpoint, the upstream model name and the
temperature live inside each assistant's `model` object. The manifest keeps the
endpoint with the model, where it belongs, and the engine carries it to every
assistant bound to that model (`Desired.implied`)."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ...manifest import (CommonSettings, HttpUrl, LoadedManifest, Name, Strict, check_references,
                         env_var, index_unique, secret_reference)
from ..base import Desired, DesiredConsumer, DesiredModel

ACCOUNT_KEY_VAR = "VAPI_API_KEY"
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
CredentialName = Annotated[str, Field(min_length=1, max_length=40)]  # Vapi's limit on names


class VapiSettings(CommonSettings):
    """Settings of a Vapi manifest (only the common ones)."""


class VapiModelSpec(Strict):
    name: CredentialName = Field(description="The custom-llm credential's name (1..40 characters); "
                                 "the model's identity: unique, and assistants refer to it.")
    url: HttpUrl = Field(description="The OpenAI-compatible base URL Vapi calls (each bound "
                      "assistant's model.url).")
    model: Name = Field(description="The model name sent upstream (each bound assistant's "
                        "model.model).")
    api_key: secret_reference(ACCOUNT_KEY_VAR) = Field(
        description="Only a ${ENV_VAR} reference; the credential's key is read "
                         "from that environment variable at apply time.")
    api_key_version: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Bump it to send a rotated key (Vapi never returns keys).")
    protect: bool = Field(False, description="Kept for parity with other platforms: a Vapi "
                          "credential is never replaced (everything about it can be updated).")



    @property
    def api_key_var(self) -> str:
        return env_var(self.api_key)


class VapiAssistantSpec(Strict):
    id: str = Field(description="The Vapi assistant id (a UUID).",
                    json_schema_extra={"pattern": UUID.pattern})
    model: Name = Field(description="The name of a model in models: the credential the assistant "
                        "pins, and the url and model it runs on.")
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = Field(
        None, description="0..2; absent means leave the assistant's temperature as it is.")

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        if not UUID.match(value):
            raise ValueError("must be a Vapi assistant id (a UUID such as "
                             "3f6c2b9e-1d7a-4c55-9a0e-5b2f8e6d4c11)")
        return value.lower()  # Vapi returns ids in lower case


class VapiManifest(Strict):
    version: Literal[1] = Field(description="The manifest format version; must be 1.")
    platform: Literal["vapi"] = Field(description="Vapi.")
    settings: VapiSettings = Field(default_factory=VapiSettings, description="All optional.")
    models: list[VapiModelSpec] = Field(default_factory=list, description="The account's "
                                        "custom-llm credentials, with the endpoint each stands for.")
    assistants: list[VapiAssistantSpec] = Field(default_factory=list, description="Which model "
                                                "(and temperature) each listed assistant uses.")


SECTIONS: dict[tuple[str, ...], type] = {
    (): VapiManifest, ("settings",): VapiSettings, ("models",): VapiModelSpec,
    ("assistants",): VapiAssistantSpec,
}


def desired(loaded: LoadedManifest) -> Desired:
    """Credentials carry only a name and a key, so a model's fields are empty;
    its url and model are implied in the binding of every assistant on it."""
    m: VapiManifest = loaded.manifest
    models = [DesiredModel(spec.name, {}, (spec.api_key_var,), loaded.where("models", i),
                           spec.api_key_version, spec.protect)
              for i, spec in enumerate(m.models)]
    implied = {spec.name: {"url": spec.url, "model": spec.model} for spec in m.models}
    consumers = [DesiredConsumer(a.id, a.model,
                                 {} if a.temperature is None else {"temperature": a.temperature},
                                 loaded.where("assistants", i))
                 for i, a in enumerate(m.assistants)]
    s = m.settings
    return Desired("vapi", models, consumers, s.prune, s.fallback_model,
                   loaded.where("settings", "fallback_model"), s.max_deregister,
                   implied=implied, variant="vapi")


def cross_check(loaded: LoadedManifest) -> list[str]:
    """Checks that span several objects: unique names and ids, references."""
    names, problems = index_unique(loaded, "models", "name", "each credential must be listed once")
    problems += index_unique(loaded, "assistants", "id", "list each assistant once")[1]
    return problems + check_references(loaded, "assistants", "model", set(names), builtins=False)
