"""The web view's HTTP server: the standard library's threading server, read-only.

No framework: a handful of GET routes need none, and ``gridctl ui`` then installs nothing
more than gridctl. Every request needs the token printed at start (in ``?token=``, the
cookie the first page sets, or an ``Authorization: token T`` header), as Jupyter's does;
only names of runs, experiments and listed artifacts reach the store, so no request can
read outside it.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

from gridctl.cli import commands
from gridctl.cli.errors import GridctlError
from gridctl.cli.names import RUN_NAME_RE, split_experiment_name
from gridctl.cli.ui import api, pages

DEFAULT_PORT = 8765
LOG_LINES = 200
"""Lines of an experiment's log its page shows (and follows)."""
MAX_LOG_LINES = 10_000
STATIC = ("ui.css", "ui.js")


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, list[str]]


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    """Sent instead of ``body``: a file streamed from disk."""
    opens: Callable[[], AbstractContextManager[Path]] | None = None
    """Gives ``file`` for as long as the reply takes to send (a store's temporary copy)."""


class Refused(Exception):
    """A request answered with an error: an unknown route or name (404), a bad query (400)."""

    def __init__(self, message: str, status: int = HTTPStatus.NOT_FOUND) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class View:
    """What the server needs to answer: where gridctl keeps its state, and the token."""

    home: Path
    token: str
    port: int

    @property
    def cookie(self) -> str:
        """Cookies are per host, not per port: each server has its own."""
        return f"gridctl_ui_{self.port}"


def serve(home: Path, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve until interrupted; ``ready`` hears the URL to open once the port is bound."""
    try:
        server = _Server((host, port), _Handler)
    except OSError as exc:
        hint = "; pass --port 0 for a free one" if port else ""
        raise GridctlError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    bound = server.server_address[1]
    server.view = View(home, secrets.token_urlsafe(24), bound)
    shown = f"[{host}]" if ":" in host else host
    ready(f"http://{shown}:{bound}/?token={server.view.token}")
    with server:
        server.serve_forever()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    view: View


class _Handler(BaseHTTPRequestHandler):
    server_version = "gridctl-ui"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _refuse_method(self) -> None:
        self.close_connection = True  # its body, if any, is never read
        refusal = Reply(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain")
        self._send(replace(refusal, headers={"Allow": "GET, HEAD"}), with_body=True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines would print the token to the terminal."""

    def _answer(self, with_body: bool) -> None:
        view = cast(_Server, self.server).view
        parts = urlsplit(self.path)
        request = Request(parts.path, parse_qs(parts.query))
        if not self._authorised(view, request):
            self._send(_error(request, HTTPStatus.UNAUTHORIZED, _UNAUTHORISED), with_body)
            return
        if request.query.get("token") and not request.path.startswith("/api/"):
            self._send(_welcome(view, request), with_body)
            return
        try:
            reply = route(view, request)
            if reply.opens is None:
                self._send(reply, with_body)
                return
            with reply.opens() as path:
                self._send(replace(reply, file=path), with_body)
        except Refused as exc:
            self._send(_error(request, exc.status, exc.message), with_body)
        except GridctlError as exc:
            self._send(_error(request, HTTPStatus.NOT_FOUND, exc.message), with_body)
        except Exception as exc:  # a store or cloud failing: this request fails, not the server
            sys.stderr.write(f"gridctl ui: error: {request.path}: {exc!r}\n")
            self._send(_error(request, HTTPStatus.INTERNAL_SERVER_ERROR, repr(exc)), with_body)

    def _authorised(self, view: View, request: Request) -> bool:
        offered = [*request.query.get("token", [])]
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("token "):
            offered.append(header[6:].strip())
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        if view.cookie in cookie:
            offered.append(cookie[view.cookie].value)
        return any(hmac.compare_digest(t.encode(), view.token.encode()) for t in offered)

    def _send(self, reply: Reply, with_body: bool) -> None:
        size = reply.file.stat().st_size if reply.file else len(reply.body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "no-store")
        for name, value in {**SECURITY_HEADERS, **reply.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if not with_body:
            return
        if reply.file is None:
            self.wfile.write(reply.body)
            return
        with reply.file.open("rb") as f:
            shutil.copyfileobj(f, self.wfile)


SECURITY_HEADERS = {
    # Everything the pages use comes from this server; charts are inline SVG.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_UNAUTHORISED = "open the URL gridctl ui printed: it carries the token"


def route(view: View, request: Request) -> Reply:
    """The reply to an authorised GET."""
    segments = [unquote(s) for s in request.path.split("/")[1:]] if request.path != "/" else []
    match segments:
        case []:
            return _html(pages.runs_page(commands.runs(view.home)))
        case ["runs", name]:
            found = commands.run_status(view.home, _run(name))
            return _html(pages.run_page(found, commands.run_metrics(view.home, found)))
        case ["experiments", name]:
            return _html(_experiment_page(view.home, _experiment(name)))
        case ["files", name, *path] if path:
            return _artifact(view.home, _experiment(name), "/".join(path))
        case ["static", name] if name in STATIC:
            return _static(name)
        case ["api", *rest]:
            return _api(view, request, rest)
    raise Refused(f"no page {request.path}")


def _api(view: View, request: Request, segments: list[str]) -> Reply:
    match segments:
        case ["runs"]:
            return _json(api.runs(view.home))
        case ["runs", name]:
            return _json(api.run(view.home, _run(name)))
        case ["experiments", name]:
            return _json(api.experiment(view.home, _experiment(name)))
        case ["experiments", name, "metrics"]:
            return _json(api.metrics(view.home, _experiment(name)))
        case ["experiments", name, "log"]:
            lines = commands.log_tail(view.home, _experiment(name), _tail(request))
            return Reply(HTTPStatus.OK, "".join(lines).encode(), "text/plain; charset=utf-8")
    raise Refused(f"no API {request.path}")


def _experiment_page(home: Path, name: str) -> str:
    found = commands.outputs(home, name, LOG_LINES)
    return pages.experiment_page(found.experiment, found.artifacts, found.metrics, found.log)


def _artifact(home: Path, name: str, path: str) -> Reply:
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    filename = quote(path.rsplit("/", 1)[-1])
    return Reply(
        HTTPStatus.OK,
        content_type=kind,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}"},
        opens=lambda: commands.artifact_file(home, name, path),
    )


def _static(name: str) -> Reply:
    data = (resources.files("gridctl.cli.ui") / "static" / name).read_bytes()
    kind = "text/css" if name.endswith(".css") else "text/javascript"
    return Reply(HTTPStatus.OK, data, f"{kind}; charset=utf-8")


def _welcome(view: View, request: Request) -> Reply:
    """A page opened with the token: keep the token in a cookie and drop it from the address,
    so it stays out of the history and every link works without it."""
    rest = {k: v for k, v in request.query.items() if k != "token"}
    query = "&".join(f"{quote(k)}={quote(v)}" for k, values in rest.items() for v in values)
    target = request.path + (f"?{query}" if query else "")
    cookie = f"{view.cookie}={view.token}; Path=/; HttpOnly; SameSite=Strict"
    return Reply(HTTPStatus.SEE_OTHER, b"", headers={"Location": target, "Set-Cookie": cookie})


def _run(name: str) -> str:
    if not RUN_NAME_RE.fullmatch(name):
        raise Refused(f"no run named {name!r}")
    return name


def _experiment(name: str) -> str:
    if split_experiment_name(name) is None:
        raise Refused(f"no experiment named {name!r}")
    return name


_DIGITS = re.compile(r"[0-9]{1,9}")


def _tail(request: Request) -> int:
    (text,) = request.query.get("tail", [str(LOG_LINES)])[:1]
    if not _DIGITS.fullmatch(text):
        raise Refused(f"tail={text!r}: a number of lines is expected", HTTPStatus.BAD_REQUEST)
    return min(int(text), MAX_LOG_LINES)


def _html(page: str) -> Reply:
    return Reply(HTTPStatus.OK, page.encode())


def _json(data: object) -> Reply:
    return Reply(HTTPStatus.OK, json.dumps(data).encode(), "application/json")


def _error(request: Request, status: int, message: str) -> Reply:
    if request.path.startswith("/api/"):
        return Reply(status, json.dumps({"error": message}).encode(), "application/json")
    return Reply(status, pages.error_page(status, message).encode())
