"""User-facing errors: each says where the problem is and what to do.

The CLI prints these without a traceback; anything else is a bug.
"""
from __future__ import annotations


class ConvaiSyncError(Exception):
    """An error the user can act on. `str()` is the full message."""

    exit_code = 1


class ManifestError(ConvaiSyncError):
    """One or more problems in a manifest, each as `FILE:LINE: message`."""

    def __init__(self, problems: list[str]):
        from .escape import inline  # each problem is one line, whatever values it quotes
        self.problems = [inline(p) for p in problems]
        super().__init__("\n".join(self.problems))


class ApiError(ConvaiSyncError):
    """A Convai API call failed. Names the call and the object."""

    def __init__(self, call: str, obj: str | None, status: int | None, message: str,
                 hint: str | None = None):
        self.call, self.obj, self.status, self.api_message = call, obj, status, message
        where = f"{call}" + (f" ({obj})" if obj else "")
        code = f"HTTP {status}" if status else "no response"
        text = f"{where} failed: {code}: {message}"
        super().__init__(text + (f"\n  {hint}" if hint else ""))

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class PlanError(ConvaiSyncError):
    """The plan is unsafe or impossible; nothing was written."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = problems or [message]
        super().__init__(message)
