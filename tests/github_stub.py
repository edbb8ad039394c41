"""A stub of the GitHub REST API on loopback: the calls the action makes
(issue comments, a commit's pull requests, issues and labels), kept in memory
so a test can read what the action posted."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT = {"login": "github-actions[bot]", "type": "Bot"}


class GitHubStub:
    def __init__(self, repo: str = "acme/characters", token: str = "ghs-test-token") -> None:
        self.repo, self.token = repo, token
        self.comments: dict[int, dict[str, Any]] = {}     # id -> {id, issue, body, user}
        self.issues: dict[int, dict[str, Any]] = {}       # number -> issue
        self.labels: set[str] = set()
        self.commit_pulls: dict[str, int] = {}            # merge commit sha -> PR number
        self.requests: list[tuple[str, str]] = []
        self.refuse_writes = False                        # a fork's read-only token
        self._next = 100
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                if self.headers.get("Authorization") != f"Bearer {stub.token}":
                    return self._reply(401, {"message": "Bad credentials"})
                with stub._lock:
                    stub.requests.append((self.command, self.path))
                    status, reply = stub.route(self.command, self.path, body)
                self._reply(status, reply)

            do_GET = do_POST = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["issue"] == number]

    def _id(self) -> int:
        self._next += 1
        return self._next

    def route(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        prefix = f"/repos/{self.repo}"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}
        path = path[len(prefix):]
        if method != "GET" and self.refuse_writes:
            return 403, {"message": "Resource not accessible by integration"}
        page = int(query.get("page", ["1"])[0])
        per_page = int(query.get("per_page", ["30"])[0])
        if m := re.fullmatch(r"/issues/(\d+)/comments", path):
            number = int(m[1])
            if method == "GET":
                return 200, _page(self.comments_on(number), page, per_page)
            comment = {"id": self._id(), "issue": number, "body": body["body"], "user": BOT,
                       "html_url": f"https://github.test/{self.repo}/issues/{number}#c"}
            self.comments[comment["id"]] = comment
            return 201, comment
        if m := re.fullmatch(r"/issues/comments/(\d+)", path):
            comment = self.comments[int(m[1])]
            comment["body"] = body["body"]
            return 200, comment
        if m := re.fullmatch(r"/commits/([0-9a-f]+)/pulls", path):
            number = self.commit_pulls.get(m[1])
            return 200, [] if number is None else [{"number": number, "merged_at": "2026-01-01T00:00:00Z"}]
        if path == "/labels":
            if body["name"] in self.labels:
                return 422, {"message": "Validation Failed"}
            self.labels.add(body["name"])
            return 201, body
        if path == "/issues" and method == "GET":
            label = query.get("labels", [""])[0]
            found = [i for i in self.issues.values() if i["state"] == query.get("state", ["open"])[0]
                     and label in i["labels"]]
            return 200, _page(found, page, per_page)
        if path == "/issues":
            number = self._id()
            self.issues[number] = {"number": number, "state": "open", **body}
            return 201, self.issues[number]
        if m := re.fullmatch(r"/issues/(\d+)", path):
            self.issues[int(m[1])].update(body)
            return 200, self.issues[int(m[1])]
        return 404, {"message": f"stub: no route {method} {path}"}


def _page(items: list[Any], page: int, per_page: int) -> list[Any]:
    return items[(page - 1) * per_page: page * per_page]
