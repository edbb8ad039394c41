"""Convai adapter: custom LLMs (two API dialects) and the characters that use them."""
from __future__ import annotations

from typing import Any

from ..base import Capabilities, Platform, lazy
from .builtins import builtin_models
from .client import DEFAULT_URL, ConvaiClient
from .dialects import DIALECTS, MODEL_FIELDS
from .manifest import SECTIONS, Manifest, cross_check, desired


def capabilities(variant: str) -> Capabilities:
    dialect = DIALECTS.get(variant, DIALECTS["llm-models"])
    return Capabilities(
        platform="convai", variant=dialect.name, consumer_noun="character",
        model_ref="model_group_name", secret_field="api_key", model_fields=MODEL_FIELDS,
        readable=dialect.readable, updatable=dialect.updatable, registrable=dialect.registrable,
        binding_fields=("temperature",), consumer_key="char_id",
        unique_fields=frozenset({"display_name"}))


def _emulator(variant: str, seed: dict | None, key: str = "emulator-key", **options: Any) -> Any:
    from .emulator import Emulator, demo_seed
    return Emulator(dialect="llm-models" if variant == "auto" else variant, account_key=key,
                    seed=demo_seed() if seed is None else seed, **options)



PLATFORM = Platform(
    name="convai", title="Convai", consumer_noun="character",
    env_url="CONVAI_API_URL", env_key="CONVAI_API_KEY", default_url=DEFAULT_URL,
    manifest_model=Manifest, sections=SECTIONS, desired=desired, cross_check=cross_check,
    capabilities=capabilities, open_client=ConvaiClient, emulator=_emulator,
    export=lazy(f"{__name__}.export", "export_manifest"),
    variants=("auto", "llm-models", "custom-llm"), builtins=builtin_models)

__all__ = ["ConvaiClient", "DEFAULT_URL", "PLATFORM", "capabilities"]
