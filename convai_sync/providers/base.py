"""The provider interface: what the engine needs from a platform, and nothing
the engine knows about any one platform.

A platform (Convai, LangBot, Vapi) is one adapter package under providers/
that fills in `Platform` (its manifest section, capabilities, client, export,
emulator and environment variables) and one line in providers/registry.py.
The core speaks of *models* (what the platform registers) and *consumers*
(what talks through one), and only through these types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    from ..manifest import LoadedManifest
    from ..model import LiveState
    from ..plan import Change
    from ..secrets import Secret


@dataclass(frozen=True)
class Capabilities:
    """What one platform (in one API variant) can read and write."""

    platform: str                    # "convai" | "langbot" | "vapi"
    variant: str                     # the API variant read (Convai's dialect; else the platform)
    consumer_noun: str               # "character" | "pipeline" | "assistant"
    model_ref: str                   # the binding key that names the model
    secret_field: str                # how the model's key is called in plans ("api_key", ...)
    model_fields: tuple[str, ...]    # every non-secret model field, in display order
    readable: frozenset[str]         # model fields the API returns
    updatable: frozenset[str]        # a change to any other readable field is a replace
    registrable: frozenset[str]      # fields a register sends (the key aside)
    binding_fields: tuple[str, ...]  # what a consumer's binding carries besides model_ref
    consumer_key: str = "id"         # the manifest key of a consumer's id ("char_id", ...)
    unique_fields: frozenset[str] = frozenset()  # model fields unique per account
    key_readable: bool = False       # the API returns keys, so key drift can be seen
    key_bound: frozenset[str] = frozenset()  # fields whose change must send the key again

    @property
    def unreadable(self) -> tuple[str, ...]:
        """Model fields this variant never returns: never a difference, never drift."""
        return tuple(f for f in self.model_fields if f not in self.readable)

    @property
    def write_only(self) -> tuple[str, ...]:
        """Model fields the API takes but never returns: what was last applied is
        recorded (state.py) and compared instead, as Terraform does."""
        takes = self.updatable | self.registrable
        return tuple(f for f in self.unreadable if f in takes)

    def untakeable(self, fields: dict[str, Any]) -> tuple[str, ...]:
        """Of a model's desired fields, those neither a register nor an update takes."""
        takes = self.updatable | self.registrable
        return tuple(f for f in fields if f in self.model_fields and f not in takes)

    def untakeable_problem(self, where: str, model: str, fields: tuple[str, ...]) -> str:
        return (f"{where}: model '{model}' sets {', '.join(fields)}, which the {self.variant} API "
                "cannot set (neither its register nor its update takes it); remove it from the "
                "manifest" + (", or use another api_dialect" if self.platform == "convai" else ""))

    def consumers(self, n: int) -> str:
        return self.consumer_noun if n == 1 else self.consumer_noun + "s"


@dataclass(frozen=True)
class DesiredModel:
    name: str                        # identity in the manifest, and in plans
    fields: dict[str, Any]           # desired non-secret fields (unset ones left out)
    secret_vars: tuple[str, ...]     # the ${VAR}s of its key(s), in order
    where: str                       # FILE:LINE of its entry
    key_version: int | None = None
    protect: bool = False
    server_id: str | None = None     # a pin to one live object, where names are not unique


@dataclass(frozen=True)
class DesiredConsumer:
    id: str
    model: str
    fields: dict[str, Any]           # binding fields to set; absent = leave as it is
    where: str


@dataclass
class Desired:
    """A manifest in the engine's terms (built by the platform from its section)."""

    platform: str
    models: list[DesiredModel]
    consumers: list[DesiredConsumer]
    prune: bool = False
    fallback_model: str | None = None
    fallback_where: str = ""
    max_deregister: int = 3
    builtins: frozenset[str] = frozenset()
    implied: dict[str, dict[str, Any]] = field(default_factory=dict)  # binding fields a model implies
    variant: str = "auto"            # the API variant the manifest asks for
    keys: dict[str, Sequence["Secret"]] = field(default_factory=dict)  # resolved, where known;
    # set by the engine before a read, for platforms that return keys (key drift)

    def model(self, name: str) -> DesiredModel | None:
        return self._by_name.get(name)

    @property
    def _by_name(self) -> dict[str, DesiredModel]:
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = self.__dict__["_index"] = {m.name: m for m in self.models}
        return cached


class Client(Protocol):
    """A live account of one platform. Writes take the plan's own Change."""

    base_url: str
    requests: int

    def read_state(self, variant: str, desired: Desired | None = None,
                   memo: dict[str, Any] | None = None) -> "LiveState":
        """Read models and consumers in a constant number of requests. `desired`
        lets an adapter match server objects to manifest names; `memo` is what
        it asked to keep after the last apply (memo())."""
    def capabilities(self) -> Capabilities: ...
    def ping(self, variant: str) -> str:
        """One read that proves the URL and the key (Convai's auto: two on a
        custom-llm account); what it saw, in a few words."""
    def register(self, change: "Change", secrets: Sequence["Secret"]) -> None: ...
    def update(self, change: "Change", secrets: Sequence["Secret"] | None) -> None: ...
    def replace(self, change: "Change", secrets: Sequence["Secret"]) -> None: ...
    def deregister(self, change: "Change") -> None: ...
    def bind(self, change: "Change") -> None: ...
    def finish(self) -> list[str]:
        """After a successful apply: tidy what it left behind; notes for the user."""

    def memo(self) -> dict[str, Any]:
        """What the adapter needs remembered for this account (the state file)."""
    def close(self) -> None: ...


@dataclass(frozen=True)
class Endpoint:
    """Where a model's consumers send their chats, as the platform will call it:
    an OpenAI-compatible base URL, the model name sent upstream, and the ${VAR}
    of the key sent with it (never the key itself)."""

    model: str                       # the manifest name
    url: str
    upstream: str
    key_var: str | None
    where: str                       # FILE:LINE of the model's entry
    fields: tuple[str, ...] = ()     # the manifest fields it is made of: changing one moves consumers
    unchecked: str | None = None     # why it cannot be checked, if it cannot


def endpoint_reader(url_field: str, model_field: str,
                    unchecked: Callable[[dict[str, Any]], str | None] = lambda fields: None,
                    ) -> Callable[[Desired], list[Endpoint]]:
    """A platform's `endpoints` hook: each declared model's endpoint, from its
    own fields or the binding fields it implies (Vapi keeps the URL there)."""
    def endpoints(desired: Desired) -> list[Endpoint]:
        out = []
        for m in desired.models:
            fields = {**desired.implied.get(m.name, {}), **m.fields}
            out.append(Endpoint(m.name, str(fields[url_field]), str(fields[model_field]),
                                m.secret_vars[0] if m.secret_vars else None, m.where,
                                (url_field, model_field), unchecked(fields)))
        return out
    return endpoints


@dataclass(frozen=True)
class Platform:
    """Everything platform-specific, behind one registry entry."""

    name: str
    title: str                                            # "Convai", as messages name it
    consumer_noun: str
    env_url: str
    env_key: str
    default_url: str
    manifest_model: type                                  # the pydantic model of its manifest
    sections: dict[tuple[str, ...], type]                 # data path -> pydantic model (error hints)
    desired: Callable[["LoadedManifest"], Desired]
    cross_check: Callable[["LoadedManifest"], list[str]]
    capabilities: Callable[[str], Capabilities]           # by variant
    open_client: Callable[..., Client]                    # (url, key, parallelism=, retry=, state=)
    emulator: Callable[[str, dict | None], Any]           # (variant, seed) -> a started-able emulator
    emulator_key: str = "emulator-key"
    export: Callable[..., Any] | None = None
    variants: tuple[str, ...] = ()
    temperature_range: tuple[float, float] = (0.0, 1.0)
    builtins: Callable[[], frozenset[str]] = frozenset    # the shipped catalogue of built-in models
    url_field: str = "base_url"                           # the model's endpoint, as the manifest says
    endpoints: Callable[[Desired], list[Endpoint]] = endpoint_reader("base_url", "model_name")


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A function imported only when first called: a platform's export (and the
    like) costs nothing to commands that never use it."""
    def call(*args: Any, **kwargs: Any) -> Any:
        import importlib
        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    return call
