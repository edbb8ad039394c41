"""LangBot adapter: LLM models and the pipelines that use them (LangBot 4.11)."""
from __future__ import annotations

from typing import Any

from ..base import Capabilities, Platform, endpoint_reader, lazy
from .client import MODEL_FIELDS, LangBotClient
from .manifest import SECTIONS, LangBotManifest, cross_check, desired


def capabilities(variant: str = "langbot") -> Capabilities:
    fields = frozenset(MODEL_FIELDS)
    return Capabilities(
        platform="langbot", variant="langbot", consumer_noun="pipeline", model_ref="model",
        secret_field="api_keys", model_fields=MODEL_FIELDS,
        readable=fields | {"api_keys"}, updatable=fields | {"api_keys"}, registrable=fields,
        binding_fields=(), consumer_key="uuid", key_readable=True,
        key_bound=frozenset({"requester", "base_url"}))


def _not_openai(fields: dict[str, Any]) -> str | None:
    """LangBot speaks each provider's own API; only the *-chat-completions
    requesters call an OpenAI-compatible endpoint the way the check does."""
    requester = str(fields.get("requester", ""))
    if requester.endswith("-chat-completions"):
        return None
    return f"requester {requester} is not OpenAI-compatible; test it in LangBot's model settings"


def _emulator(variant: str, seed: dict | None, key: str = "emulator-key", **options: Any) -> Any:
    from .emulator import LangBotEmulator
    from .emulator_seed import langbot_demo_seed
    return LangBotEmulator(api_key=key, seed=langbot_demo_seed() if seed is None else seed, **options)



PLATFORM = Platform(
    name="langbot", title="LangBot", consumer_noun="pipeline",
    env_url="LANGBOT_API_URL", env_key="LANGBOT_API_KEY", default_url="http://127.0.0.1:5300",
    manifest_model=LangBotManifest, sections=SECTIONS, desired=desired, cross_check=cross_check,
    capabilities=capabilities, open_client=LangBotClient, emulator=_emulator,
    export=lazy(f"{__name__}.export", "export_manifest"),
    variants=("langbot",), endpoints=endpoint_reader("base_url", "name", _not_openai))

__all__ = ["LangBotClient", "PLATFORM", "capabilities"]
