"""The manifest: pydantic models, loading with line numbers, cross-checks and
`${ENV_VAR}` secret resolution. Every problem is reported as `FILE:LINE: ...`."""
from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from .providers.base import Platform

from . import include, yamlpos
from .errors import ConvaiSyncError, ManifestError
from .escape import inline, inline_quoted
from .providers.base import Desired
from .perf import gc_paused
from .secrets import ENV_REF, Secret

MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_DEREGISTER = 3


class Strict(BaseModel):
    """Every manifest object: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Name = Annotated[str, Field(min_length=1, max_length=200)]
PLATFORMS = ("convai", "langbot", "vapi")


class CommonSettings(Strict):
    """Settings every platform shares."""

    prune: bool = Field(False, description="Delete live models that are not in the manifest "
                        "(after moving what uses them to fallback_model).")
    fallback_model: Name | None = Field(None, description="Where consumers that are not in the "
                                        "manifest go when their model is deleted (and, on Convai, "
                                        "where characters wait while their model is replaced).")
    max_deregister: Annotated[int, Field(ge=0)] = Field(
        DEFAULT_MAX_DEREGISTER, description="Refuse plans that delete or replace more models "
        "than this (override with --allow-deregister).")
    environment: Name | None = Field(None, description="Which environment (account) this manifest "
                                     "is for, e.g. production: the state file keeps its records "
                                     "under this name and the API URL. Default: the manifest's "
                                     "file name without extension.")


def http_url(value: str) -> str:
    """A field validator: an http(s) URL without spaces."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("not an http(s) URL")
    return value


def env_reference(value: str, account_var: str) -> str:
    """A field validator: a secret only as ${VAR}, and never an account key."""
    match = ENV_REF.match(value)
    if not match:
        raise ValueError("plaintext api_key")
    if account_key_var(match.group(1), account_var):
        raise ValueError(f"account key as api_key: {match.group(1)}")
    return value


HttpUrl = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": r"^https?://\S+$"}),
                    AfterValidator(http_url)]


def secret_reference(account_var: str) -> Any:
    """A `${VAR}` field type that refuses plaintext and any account key."""
    return Annotated[str, Field(json_schema_extra={"pattern": ENV_REF.pattern}),
                     AfterValidator(lambda value: env_reference(value, account_var))]


def account_key_var(var: str, own: str | None = None) -> bool:
    """Whether `var` holds an account key (this platform's or any other's)."""
    from .providers.registry import ACCOUNT_KEY_VARS
    return var == own or var in ACCOUNT_KEY_VARS


def env_var(reference: str) -> str:
    return ENV_REF.match(reference).group(1)  # type: ignore[union-attr]


@dataclass
class LoadedManifest:
    """A valid manifest plus where it came from (for later error messages)."""

    manifest: Any                      # the platform's pydantic manifest
    path: str
    located: yamlpos.Located
    platform: "Platform"

    def where(self, *path: str | int) -> str:
        return self.located.where(path)

    @property
    def environment(self) -> str:
        """Which environment (account) this manifest is for: settings.environment,
        else the file's name without extension (staging.yaml -> staging)."""
        return self.manifest.settings.environment or Path(self.path).stem

    @functools.cached_property
    def desired(self) -> Desired:
        """The manifest in the engine's terms."""
        return self.platform.desired(self)


def load_manifest(path: str | os.PathLike[str]) -> LoadedManifest:
    """Read, parse and validate a manifest file (and the files it includes).
    Raises ManifestError."""
    name = str(path)
    text = _read_text(Path(path), name)
    return parse_manifest(text, name)


@gc_paused()  # many small acyclic objects: see perf.py
def parse_manifest(text: str, name: str = "<manifest>") -> LoadedManifest:
    located = _document(text, name)
    target = _platform_of(located)
    includes = include.Includes()
    try:
        located = include.expand(located, target, _read_document, includes)
        return _validate(located, name, target)
    except ManifestError as e:
        raise ManifestError([includes.annotate(p) for p in e.problems]) from None


def _validate(located: yamlpos.Located, name: str, target: "Platform") -> LoadedManifest:
    try:
        manifest = target.manifest_model.model_validate(located.data)
    except ValidationError as e:
        raise ManifestError(_pydantic_problems(located, e, target)) from None
    loaded = LoadedManifest(manifest, name, located, target)
    problems = target.cross_check(loaded) + _untakeable(loaded)
    if problems:
        raise ManifestError(problems)
    return loaded


def _read_document(name: str) -> yamlpos.Located:
    return _document(_read_text(Path(name), name), name)


def _document(text: str, name: str) -> yamlpos.Located:
    """One YAML file as a located mapping; FILE:LINE errors otherwise."""
    try:
        located = yamlpos.load(text, name)
    except yamlpos.DuplicateKey as e:
        raise ManifestError([f"{name}:{e.line}: duplicate key '{e.key}' (first at line "
                             f"{e.first}); keep only one"]) from None
    except yamlpos.TooDeep as e:
        raise ManifestError([f"{name}:{e.line}: {e}; a manifest never needs that many, so this "
                             "is not a manifest (or it was written to crash the parser)"]) from None
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
    return located


def _untakeable(loaded: LoadedManifest) -> list[str]:
    """Fields the manifest's chosen API variant cannot write at all (with `auto`
    the variant is known only once read: the planner checks it then)."""
    desired = loaded.desired
    if desired.variant == "auto":
        return []
    caps = loaded.platform.capabilities(desired.variant)
    return [caps.untakeable_problem(loaded.where("models", i, fields[0]), m.name, fields)
            for i, m in enumerate(desired.models) if (fields := caps.untakeable(m.fields))]


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


def _platform_of(located: yamlpos.Located) -> "Platform":
    """The platform the manifest names (`platform:`; a manifest without one is Convai's)."""
    from .providers.registry import platform

    value = located.data.get("platform", "convai")
    if value not in PLATFORMS:
        raise ManifestError([f"{located.where(('platform',))}: platform must be one of "
                             f"{', '.join(PLATFORMS)}, not {value!r}"])
    return platform(value)


def _yaml_problem(name: str, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark else 1
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    plain = next((words for clue, words in _YAML_WORDS if clue in problem), None)
    if plain:
        return f"{name}:{line}: YAML syntax error: {plain}"
    detail = f"{context}, {problem}" if context else problem
    return f"{name}:{line}: YAML syntax error: {detail}; fix the indentation or quoting there"


# PyYAML's words for the usual slips, and what they mean to someone editing a manifest
_YAML_WORDS = (
    ("expected <block end>", "this line is indented differently from the lines before it in "
     "the same block; indent the keys of one entry to the same column (with spaces)"),
    ("did not find expected key", "this line is indented differently from the lines before it in "
     "the same block; indent the keys of one entry to the same column (with spaces)"),
    ("found character '\\t'", "a tab character; YAML is indented with spaces only"),
    ("mapping values are not allowed here", "a ':' where a value was expected: a key is indented "
     "too deep, or a value contains ': ' and needs quotes"),
    ("found unexpected end of stream", "a quoted value is never closed; add the closing quote"),
)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        part = part if isinstance(part, int) else inline(str(part))
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "top level"


_TYPE_WORDS = {"string": "a string", "bool": "true or false", "int": "a whole number",
               "float": "a number", "list": "a list", "dict": "a mapping", "model": "a mapping"}


def _pydantic_problems(located: yamlpos.Located, err: ValidationError,
                       target: "Platform") -> list[str]:
    problems: set[tuple[str, int, str]] = set()
    known_fields = {f for m in target.sections.values() for f in m.model_fields}
    for e in err.errors():
        # drop pydantic's union/validator labels, keep only the data path
        raw = e["loc"]
        extra = e["type"] == "extra_forbidden"
        loc = tuple(p for i, p in enumerate(raw) if isinstance(p, int) or p in known_fields
                    or (extra and i == len(raw) - 1))
        where = located.where(loc, key=extra)
        name, line = where.rsplit(":", 1)
        problems.add((name, int(line), f"{where}: {_describe(e, loc, target)}"))
    return [text for *_, text in sorted(problems)]


def _describe(e: Mapping[str, Any], loc: tuple[Any, ...], target: "Platform") -> str:
    kind, where, value = e["type"], _dotted(loc), e.get("input")
    field = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        parent = target.sections.get(tuple(p for p in loc[:-1] if isinstance(p, str)))
        known = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(field), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        return f"unknown key {inline_quoted(field)} in {_dotted(loc[:-1])}{hint}"
    if kind == "missing":
        return f"{_dotted(loc[:-1])} is missing the required field '{field}'"
    if kind == "literal_error" and field == "version":
        return f"version must be 1, not {value!r}; this release reads manifest version 1"
    if kind == "literal_error":
        return f"{where} must be one of {e['ctx']['expected']}, not {value!r}"
    if kind == "value_error" and "not an http(s) URL" in e["msg"]:
        return f"{where} must be an http(s) URL such as https://api.openai.com/v1, not {value!r}"
    if kind == "value_error" and "account key" in e["msg"]:
        var = e["msg"].rsplit(": ", 1)[-1]
        whose = f"your {target.title} account key" if var == target.env_key else "an account key"
        return (f"{where} is ${{{var}}}, {whose}: it would be sent to this model's "
                f"{target.url_field}. Use the model provider's own key, in its own variable")
    if kind == "value_error" and "plaintext" in e["msg"]:
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", value) if isinstance(value, str) else None
        if bare:
            return (f"{where} is {value}, which is read as a plaintext secret; a variable is "
                    f"written with braces: ${{{bare.group(1)}}}")
        return (f"{where} is a plaintext secret; write it as ${{ENV_VAR}} (for example "
                f"${{MY_MODEL_KEY}}) and put the key in that environment variable")
    if kind in ("greater_than_equal", "less_than_equal") and field == "temperature":
        low, high = target.temperature_range
        return f"{where} must be between {low:g} and {high:g}, got {value}"
    if kind == "greater_than_equal":
        return f"{where} must be at least {e['ctx']['ge']}, got {value}"
    if kind == "less_than_equal":
        return f"{where} must be at most {e['ctx']['le']}, got {value}"
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


def index_unique(loaded: LoadedManifest, section: str, field: str, advice: str,
                 value_of: Any = None) -> tuple[dict[str, int], list[str]]:
    """Position of each entry of `section` by `field` (or `value_of(entry)`), and
    a FILE:LINE problem for every repeat: '... duplicate FIELD 'x' (also
    SECTION[i]); ADVICE'."""
    index: dict[str, int] = {}
    problems: list[str] = []
    for i, entry in enumerate(getattr(loaded.manifest, section)):
        value = value_of(entry) if value_of else getattr(entry, field)
        if value in index:
            problems.append(f"{loaded.where(section, i, field)}: duplicate {field} '{value}' "
                            f"(also {section}[{index[value]}]); {advice}")
        index.setdefault(value, i)
    return index, problems


def check_references(loaded: LoadedManifest, section: str, field: str, known: set[str] | frozenset[str],
                     builtins: bool = True) -> list[str]:
    """A FILE:LINE problem for each `section[i].field`, and for
    settings.fallback_model, that names no known model."""
    problems = [f"{loaded.where(section, i, field)}: {unknown_model(getattr(e, field), known, builtins)}"
                for i, e in enumerate(getattr(loaded.manifest, section))
                if getattr(e, field) not in known]
    fb = loaded.manifest.settings.fallback_model
    if fb is not None and fb not in known:
        problems.append(f"{loaded.where('settings', 'fallback_model')}: "
                        f"fallback_{unknown_model(fb, known, builtins)}")
    return problems


def unknown_model(name: str, known: set[str] | frozenset[str], builtins: bool = True) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {inline_quoted(close[0])}? " if close else ""
    if not builtins:
        return f"model {inline_quoted(name)} is not in this manifest's models; {hint}add it under models"
    return (f"model {inline_quoted(name)} is neither in this manifest's models nor a built-in model code; "
            f"{hint}add it under models, or add the code to settings.builtin_models")


@dataclass
class ResolvedSecrets:
    """Key values per model (in the order the manifest lists them), and the
    variables that were unset."""

    keys: dict[str, tuple[Secret, ...]]
    missing: list[tuple[str, str, str]]  # (VAR, model, file:line)

    def missing_message(self) -> str:
        lines = [f"{where}: environment variable {var} is not set (api_key of model '{group}')"
                 for var, group, where in self.missing]
        return "\n".join(lines)

    def only(self, models: Iterable[str]) -> "ResolvedSecrets":
        """The same, with only the unset variables of `models` (what an apply sends)."""
        wanted = set(models)
        return ResolvedSecrets(self.keys, [m for m in self.missing if m[1] in wanted])

    def refusal(self) -> ConvaiSyncError:
        """The error an apply stops with, before its first write, when keys are unset."""
        return ConvaiSyncError(self.missing_message() + "\nNothing was written. Set these "
                               "variables (in CI: repository secrets) and run apply again.")


def resolve_secrets(loaded: LoadedManifest, environ: Mapping[str, str] | None = None,
                    placeholder: str | None = None) -> ResolvedSecrets:
    """Look up every `${VAR}` of the manifest."""
    return resolve_keys(((m.name, m.secret_vars, m.where) for m in loaded.desired.models),
                        environ, placeholder)


def resolve_keys(wanted: Iterable[tuple[str, Sequence[str], str]],
                 environ: Mapping[str, str] | None = None,
                 placeholder: str | None = None) -> ResolvedSecrets:
    """Look up (model, VARs, where) in the environment. With `placeholder`, unset
    variables get that value (only against the emulator, which has no real keys)."""
    env = os.environ if environ is None else environ
    keys: dict[str, tuple[Secret, ...]] = {}
    missing = []
    for group, variables, where in wanted:
        found = []
        for var in variables:
            value = env.get(var)
            if not value:
                if placeholder is None:
                    missing.append((var, group, where))
                    continue
                value = f"{placeholder}-{var}"
            found.append(Secret(value, "${" + var + "}"))
        if len(found) == len(variables):
            keys[group] = tuple(found)
    return ResolvedSecrets(keys, missing)
