"""Vapi adapter: custom-LLM credentials (the models) and the assistants that use
them (the consumers). A credential holds only a name and a write-only key; the
endpoint, model name and temperature live in each assistant's `model` object."""
from __future__ import annotations

from typing import Any

from ..base import Capabilities, Platform, endpoint_reader, lazy
from .client import DEFAULT_URL, VapiClient
from .manifest import SECTIONS, VapiManifest, cross_check, desired


def capabilities(variant: str = "vapi") -> Capabilities:
    """One variant. A credential has nothing readable or updatable but its
    name and key, so every model field is empty: what matters is bound."""
    return Capabilities(
        platform="vapi", variant="vapi", consumer_noun="assistant", model_ref="credential",
        secret_field="api_key", model_fields=(), readable=frozenset(), updatable=frozenset(),
        registrable=frozenset(), binding_fields=("url", "model", "temperature"),
        consumer_key="id", key_readable=False)


def _emulator(variant: str, seed: dict | None, key: str = "emulator-key", **options: Any) -> Any:
    from .emulator import VapiEmulator, vapi_demo_seed
    return VapiEmulator(api_key=key, seed=vapi_demo_seed() if seed is None else seed, **options)



PLATFORM = Platform(
    name="vapi", title="Vapi", consumer_noun="assistant",
    env_url="VAPI_API_URL", env_key="VAPI_API_KEY", default_url=DEFAULT_URL,
    manifest_model=VapiManifest, sections=SECTIONS, desired=desired, cross_check=cross_check,
    capabilities=capabilities, open_client=VapiClient, emulator=_emulator,
    export=lazy(f"{__name__}.export", "export_manifest"),
    variants=("vapi",), temperature_range=(0.0, 2.0), url_field="url",
    endpoints=endpoint_reader("url", "model"))

__all__ = ["DEFAULT_URL", "PLATFORM", "VapiClient", "capabilities"]
