"""The platforms convai-sync can manage: one line each. An adapter is imported
only when a manifest or a command names its platform."""
from __future__ import annotations

import importlib

from .base import Platform

_ADAPTERS = {
    "convai": "convai_sync.providers.convai",
    "langbot": "convai_sync.providers.langbot",
    "vapi": "convai_sync.providers.vapi",
}
NAMES = tuple(_ADAPTERS)
# every platform's account key variable (each adapter's Platform.env_key): never a model's
# key, since the value would be sent to that model's URL (tests check this list is complete)
ACCOUNT_KEY_VARS = ("CONVAI_API_KEY", "LANGBOT_API_KEY", "VAPI_API_KEY")


def platform(name: str) -> Platform:
    """The adapter registered under `name` (KeyError for an unknown one)."""
    return importlib.import_module(_ADAPTERS[name]).PLATFORM
