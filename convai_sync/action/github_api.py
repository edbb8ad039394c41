"""The few GitHub REST calls the action makes (stdlib only: the action must not
need more than convai-sync itself): sticky comments, the pull request of a
merge commit, and one open drift issue per environment."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

PER_PAGE = 100


class GitHubError(Exception):
    def __init__(self, method: str, path: str, status: int, message: str):
        self.status = status
        super().__init__(f"GitHub API {method} {path}: HTTP {status}: {message}")


@dataclass
class GitHub:
    api_url: str      # GITHUB_API_URL (https://api.github.com, or GHES)
    repo: str         # owner/name
    token: str

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url.rstrip("/") + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json",
            "User-Agent": "convai-sync-action"})
        try:
            with urllib.request.urlopen(req, timeout=30) as reply:
                text = reply.read().decode()
        except urllib.error.HTTPError as e:
            raise GitHubError(method, path, e.code, _message(e)) from None
        except (urllib.error.URLError, TimeoutError) as e:
            raise GitHubError(method, path, 0, str(getattr(e, "reason", e))) from None
        return json.loads(text) if text else None

    def pages(self, path: str) -> list[Any]:
        """Every item of a listing (GitHub pages at most 100 per request)."""
        out: list[Any] = []
        sep = "&" if "?" in path else "?"
        page = 1
        while True:
            batch = self.request("GET", f"{path}{sep}per_page={PER_PAGE}&page={page}")
            out += batch
            if len(batch) < PER_PAGE:
                return out
            page += 1

    def find_comment(self, number: int, marker: str) -> dict[str, Any] | None:
        """The bot's comment carrying `marker` (never a person's comment quoting it)."""
        for comment in self.pages(f"/repos/{self.repo}/issues/{number}/comments"):
            if (comment.get("user") or {}).get("type") == "Bot" and marker in (comment.get("body") or ""):
                return comment
        return None

    def upsert_comment(self, number: int, marker: str, body: str) -> str:
        """Update the comment carrying `marker`, or create it; its URL."""
        mine = self.find_comment(number, marker)
        if mine:
            return self.request("PATCH", f"/repos/{self.repo}/issues/comments/{mine['id']}",
                                {"body": body})["html_url"]
        return self.create_comment(number, body)

    def create_comment(self, number: int, body: str) -> str:
        return self.request("POST", f"/repos/{self.repo}/issues/{number}/comments", {"body": body})["html_url"]

    def pull_of_commit(self, sha: str) -> int | None:
        """The merged pull request that produced `sha` (a merge on the default branch)."""
        pulls = self.request("GET", f"/repos/{self.repo}/commits/{sha}/pulls")
        merged = [p for p in pulls if p.get("merged_at")] or pulls
        return merged[0]["number"] if merged else None

    def open_issues(self, label: str, marker: str) -> list[dict[str, Any]]:
        found = self.pages(f"/repos/{self.repo}/issues?state=open&labels={label}")
        return [i for i in found if "pull_request" not in i and marker in (i.get("body") or "")]

    def open_or_update_issue(self, label: str, marker: str, title: str, body: str) -> str:
        """One open issue per marker: updated when there is one, else created."""
        found = self.open_issues(label, marker)
        if found:
            number = found[0]["number"]
            self.request("PATCH", f"/repos/{self.repo}/issues/{number}", {"body": body})
            return f"Updated issue #{number}"
        try:
            self.request("POST", f"/repos/{self.repo}/labels", {"name": label, "color": "d93f0b",
                         "description": "convai-sync: an account differs from its manifest"})
        except GitHubError as e:
            if e.status != 422:  # 422: the label exists already
                raise
        made = self.request("POST", f"/repos/{self.repo}/issues", {"title": title, "body": body,
                                                                    "labels": [label]})
        return f"Opened issue #{made['number']}"

    def close_issues(self, label: str, marker: str, note: str) -> list[str]:
        done = []
        for issue in self.open_issues(label, marker):
            self.create_comment(issue["number"], note)
            self.request("PATCH", f"/repos/{self.repo}/issues/{issue['number']}",
                         {"state": "closed", "state_reason": "completed"})
            done.append(f"Closed issue #{issue['number']}")
        return done


def _message(e: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(e.read().decode()).get("message", e.reason))
    except (ValueError, AttributeError):
        return str(e.reason)
