"""Reading an emulator seed file (YAML or JSON), for any platform: what the
file holds is checked by that platform's emulator."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from convai_sync.errors import ConvaiSyncError


def read_seed_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConvaiSyncError(f"{path}: seed file not found") from None
    except IsADirectoryError:
        raise ConvaiSyncError(f"{path}: is a directory, expected a YAML or JSON seed file") from None
    except UnicodeDecodeError:
        raise ConvaiSyncError(f"{path}: not UTF-8 text, expected a YAML or JSON seed file") from None
    except OSError as exc:
        raise ConvaiSyncError(f"{path}: cannot read seed file: {exc.strerror or exc}") from None
    if not text.strip():
        raise ConvaiSyncError(f"{path}: seed file is empty; expected 'models' and 'characters'")
    return _parse(text, path)


def _parse(text: str, path: Path) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConvaiSyncError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConvaiSyncError(f"{where}: invalid YAML: {problem}") from None
