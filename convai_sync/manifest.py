"""The manifest: pydantic models, loading with line numbers, cross-checks and
`${ENV_VAR}` secret resolution. Every problem is reported as `FILE:LINE: ...`."""
from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import yamlpos
from .builtins import builtin_models
from .errors import ConvaiSyncError, ManifestError
from .perf import gc_paused
from .secrets import ENV_REF, Secret

MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MAX_DEREGISTER = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Name = Annotated[str, Field(min_length=1, max_length=200)]


class Settings(_Strict):
    prune: bool = Field(False, description="Deregister live custom models that are not in the "
                        "manifest (after moving their characters to fallback_model).")
    fallback_model: Name | None = Field(None, description="A built-in code or a manifest model: "
                                        "where unmanaged characters of a deregistered model go, and "
                                        "where characters wait while their model is replaced.")
    api_dialect: Literal["auto", "llm-models", "custom-llm"] = Field(
        "auto", description="Which Custom LLM API to use; auto probes llm-models, then custom-llm.")
    builtin_models: list[Name] = Field(default_factory=list, description="Extra built-in model "
                                       "codes Convai added after this release.")
    max_deregister: Annotated[int, Field(ge=0)] = Field(
        DEFAULT_MAX_DEREGISTER, description="Refuse plans that deregister or replace more models "
        "than this (override with --allow-deregister).")


class ModelSpec(_Strict):
    model_group_name: Name = Field(description="The model's identity; unique, not a built-in "
                                   "code, and it cannot be renamed (a new name is a new model).")
    model_name: Name = Field(description="The model name your OpenAI-compatible endpoint serves.")
    base_url: Name = Field(DEFAULT_BASE_URL, description="The endpoint's OpenAI-compatible base URL.",
                           json_schema_extra={"pattern": r"^https?://\S+$"})
    api_key: str = Field(description="Only a ${ENV_VAR} reference; the key is read from that "
                         "environment variable at apply time.",
                         json_schema_extra={"pattern": ENV_REF.pattern})
    api_key_version: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Bump it to send a rotated key (the API never returns keys).")
    display_name: Name | None = Field(None, description="Shown in Convai; unique per account.")
    is_uncensored: bool = Field(False, description="As in the Convai API.")
    protect: bool = Field(False, description="true: refuse any plan that would replace this model.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("api_key")
    @classmethod
    def _reference_only(cls, value: str) -> str:
        match = ENV_REF.match(value)
        if not match:
            raise ValueError("plaintext api_key")
        if match.group(1) == "CONVAI_API_KEY":
            raise ValueError("account key as api_key")
        return value

    @property
    def api_key_var(self) -> str:
        return ENV_REF.match(self.api_key).group(1)  # type: ignore[union-attr]


class CharacterSpec(_Strict):
    char_id: Name = Field(description="The Convai character ID (charID).")
    model_group_name: Name = Field(description="A model from models, or a built-in model code.")
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        None, description="0..1; absent means leave the character's temperature as it is.")


class Manifest(_Strict):
    version: Literal[1] = Field(description="The manifest format version; must be 1.")
    settings: Settings = Field(default_factory=Settings, description="All optional.")
    models: list[ModelSpec] = Field(default_factory=list, description="The account's custom LLMs.")
    characters: list[CharacterSpec] = Field(default_factory=list, description="Which model (and "
                                            "temperature) each listed character uses.")

    def builtins(self) -> frozenset[str]:
        return builtin_models() | frozenset(self.settings.builtin_models)


@dataclass
class LoadedManifest:
    """A valid manifest plus where it came from (for later error messages)."""

    manifest: Manifest
    path: str
    located: yamlpos.Located

    def where(self, *path: str | int) -> str:
        return f"{self.path}:{self.located.line(path)}"

    def model_line(self, group: str) -> str:
        i = self._index[0].get(group)
        return self.path if i is None else self.where("models", i)

    def character_line(self, char_id: str) -> str:
        i = self._index[1].get(char_id)
        return self.path if i is None else self.where("characters", i)

    @functools.cached_property
    def _index(self) -> tuple[dict[str, int], dict[str, int]]:
        """Position of each model and character (the first, if listed twice), so
        a plan refusing 10,000 unknown characters does not rescan the list per line."""
        models: dict[str, int] = {}
        chars: dict[str, int] = {}
        for i, m in enumerate(self.manifest.models):
            models.setdefault(m.model_group_name, i)
        for i, c in enumerate(self.manifest.characters):
            chars.setdefault(c.char_id, i)
        return models, chars


def load_manifest(path: str | os.PathLike[str]) -> LoadedManifest:
    """Read, parse and validate a manifest file. Raises ManifestError."""
    name = str(path)
    text = _read_text(Path(path), name)
    return parse_manifest(text, name)


@gc_paused()  # many small acyclic objects: see perf.py
def parse_manifest(text: str, name: str = "<manifest>") -> LoadedManifest:
    try:
        located = yamlpos.load(text)
    except yamlpos.DuplicateKey as e:
        raise ManifestError([f"{name}:{e.line}: duplicate key '{e.key}' (first at line "
                             f"{e.first}); keep only one"]) from None
    except yamlpos.AliasBomb as e:
        raise ManifestError([f"{name}:{e.line}: {e}; a manifest never needs that many, so "
                             "write the values out instead of nesting aliases"]) from None
    except yaml.YAMLError as e:
        raise ManifestError([_yaml_problem(name, e)]) from None
    if located.data is None:
        raise ManifestError([f"{name}:1: the manifest is empty; it needs at least "
                             "'version: 1' (see examples/models.yaml)"])
    if not isinstance(located.data, dict):
        kind = {str: "string", list: "list"}.get(type(located.data), type(located.data).__name__)
        raise ManifestError([f"{name}:1: the top level must be a mapping with 'version', "
                             f"'settings', 'models' and 'characters', not a {kind}"])
    try:
        manifest = Manifest.model_validate(located.data)
    except ValidationError as e:
        raise ManifestError(_pydantic_problems(name, located, e)) from None
    loaded = LoadedManifest(manifest, name, located)
    problems = _cross_check(loaded)
    if problems:
        raise ManifestError(problems)
    return loaded


def _read_text(path: Path, name: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ManifestError([f"{name}: the file is {size / 2**20:.1f} MiB; manifests are "
                                 f"limited to {MAX_BYTES // 2**20} MiB. Is this the right file?"])
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError([f"{name}: no such file; pass the manifest with -f PATH"]) from None
    except IsADirectoryError:
        raise ManifestError([f"{name}: is a directory; pass the manifest file with -f PATH"]) from None
    except PermissionError:
        raise ManifestError([f"{name}: permission denied; check the file's permissions"]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ManifestError([f"{name}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x}); "
                             "save the file as UTF-8"]) from None


def _yaml_problem(name: str, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark else 1
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    detail = f"{context}, {problem}" if context else problem
    return f"{name}:{line}: YAML syntax error: {detail}; fix the indentation or quoting there"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"


_FIELDS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Manifest, ("settings",): Settings, ("models",): ModelSpec, ("characters",): CharacterSpec,
}
_ALL_FIELDS = {f for m in (Manifest, Settings, ModelSpec, CharacterSpec) for f in m.model_fields}
_TYPE_WORDS = {"string": "a string", "bool": "true or false", "int": "a whole number",
               "float": "a number", "list": "a list", "dict": "a mapping", "model": "a mapping"}


def _model_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    return _FIELDS.get(tuple(p for p in loc if isinstance(p, str)))


def _pydantic_problems(name: str, located: yamlpos.Located, err: ValidationError) -> list[str]:
    problems: set[tuple[int, str]] = set()
    for e in err.errors():
        # drop pydantic's union/validator labels, keep only the data path
        raw = e["loc"]
        extra = e["type"] == "extra_forbidden"
        loc = tuple(p for i, p in enumerate(raw) if isinstance(p, int) or p in _ALL_FIELDS
                    or (extra and i == len(raw) - 1))
        line = located.line(loc, key=extra)
        problems.add((line, f"{name}:{line}: {_describe(e, loc)}"))
    return [text for _, text in sorted(problems)]


def _describe(e: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    kind, where, value = e["type"], _dotted(loc), e.get("input")
    field = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        parent = _model_for(loc[:-1])
        known = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(field), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        return f"unknown key '{field}' in {_dotted(loc[:-1])}{hint}"
    if kind == "missing":
        return f"{_dotted(loc[:-1])} is missing the required field '{field}'"
    if kind == "literal_error" and field == "version":
        return f"version must be 1, not {value!r}; this release reads manifest version 1"
    if kind == "literal_error":
        return f"{where} must be one of {e['ctx']['expected']}, not {value!r}"
    if kind == "value_error" and field == "base_url":
        return f"{where} must be an http(s) URL such as https://api.openai.com/v1, not {value!r}"
    if kind == "value_error" and field == "api_key" and "account key" in e["msg"]:
        return (f"{where} is ${{CONVAI_API_KEY}}, your Convai account key: it would be sent "
                "to this model's base_url. Use the model provider's own key, in its own variable")
    if kind == "value_error" and field == "api_key":
        return (f"{where} is a plaintext secret; write it as ${{ENV_VAR}} (for example "
                f"${{MY_MODEL_KEY}}) and put the key in that environment variable")
    if kind in ("greater_than_equal", "less_than_equal") and field == "temperature":
        return f"{where} must be between 0 and 1, got {value}"
    if kind == "greater_than_equal":
        return f"{where} must be at least {e['ctx']['ge']}, got {value}"
    if kind in ("string_too_short",):
        return f"{where} must not be empty"
    if kind in ("string_too_long",):
        return f"{where} is too long ({e['msg'].lower()})"
    words = _TYPE_WORDS.get(kind.split("_")[0])
    if words and kind.endswith(("_type", "_parsing")):
        return f"{where} must be {words}, not {_show(value)}"
    return f"{where}: {e['msg']}"


def _show(value: Any) -> str:
    if value is None:
        return "empty (null)"
    kinds = {str: "a string", bool: "a boolean", int: "a number", float: "a number",
             list: "a list", dict: "a mapping"}
    text = repr(value) if not isinstance(value, (list, dict)) else ""
    return f"{text} ({kinds.get(type(value), type(value).__name__)})".strip() if text else kinds.get(type(value), "?")


def _cross_check(loaded: LoadedManifest) -> list[str]:
    """Checks that span several objects: uniqueness and references."""
    m, where = loaded.manifest, loaded.where
    problems: list[str] = []
    builtins = m.builtins()
    seen: dict[Any, int] = {}
    display: dict[str, int] = {}
    for i, model in enumerate(m.models):
        group = model.model_group_name
        if group in seen:
            problems.append(f"{where('models', i, 'model_group_name')}: duplicate model_group_name "
                            f"'{group}' (also models[{seen[group]}]); each model must be listed once")
        seen.setdefault(group, i)
        if group in builtins:
            problems.append(f"{where('models', i, 'model_group_name')}: model_group_name '{group}' "
                            "is a built-in model code; choose another name for your custom model")
        if model.display_name is not None:
            if model.display_name in display:
                problems.append(f"{where('models', i, 'display_name')}: display_name "
                                f"'{model.display_name}' is also used by models[{display[model.display_name]}]; "
                                "Convai requires display names to be unique per account")
            display.setdefault(model.display_name, i)
    known = set(seen) | builtins
    chars: dict[str, int] = {}
    for i, char in enumerate(m.characters):
        if char.char_id in chars:
            problems.append(f"{where('characters', i, 'char_id')}: duplicate char_id '{char.char_id}' "
                            f"(also characters[{chars[char.char_id]}]); list each character once")
        chars.setdefault(char.char_id, i)
        if char.model_group_name not in known:
            problems.append(f"{where('characters', i, 'model_group_name')}: "
                            f"{_unknown_model(char.model_group_name, known)}")
    fb = m.settings.fallback_model
    if fb is not None and fb not in known:
        problems.append(f"{where('settings', 'fallback_model')}: fallback_{_unknown_model(fb, known)}")
    return problems


def _unknown_model(name: str, known: set[str] | frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (f"model '{name}' is neither in this manifest's models nor a built-in model code; "
            f"{hint}add it under models, or add the code to settings.builtin_models")


@dataclass
class ResolvedSecrets:
    """api_key values per model_group_name, and the variables that were unset."""

    keys: dict[str, Secret]
    missing: list[tuple[str, str, str]]  # (VAR, model_group_name, file:line)

    def missing_message(self) -> str:
        lines = [f"{where}: environment variable {var} is not set (api_key of model '{group}')"
                 for var, group, where in self.missing]
        return "\n".join(lines)

    def refusal(self) -> ConvaiSyncError:
        """The error an apply stops with, before its first write, when keys are unset."""
        return ConvaiSyncError(self.missing_message() + "\nNothing was written. Set these "
                               "variables (in CI: repository secrets) and run apply again.")


def resolve_secrets(loaded: LoadedManifest, environ: Mapping[str, str] | None = None,
                    placeholder: str | None = None) -> ResolvedSecrets:
    """Look up every `${VAR}` of the manifest."""
    return resolve_keys(((m.model_group_name, m.api_key_var, loaded.where("models", i, "api_key"))
                         for i, m in enumerate(loaded.manifest.models)), environ, placeholder)


def resolve_keys(wanted: Iterable[tuple[str, str, str]], environ: Mapping[str, str] | None = None,
                 placeholder: str | None = None) -> ResolvedSecrets:
    """Look up (model_group_name, VAR, where) in the environment. With `placeholder`,
    unset variables get that value (only against the emulator, which has no real keys)."""
    env = os.environ if environ is None else environ
    keys: dict[str, Secret] = {}
    missing = []
    for group, var, where in wanted:
        value = env.get(var)
        if not value:
            if placeholder is None:
                missing.append((var, group, where))
                continue
            value = f"{placeholder}-{var}"
        keys[group] = Secret(value, "${" + var + "}")
    return ResolvedSecrets(keys, missing)
