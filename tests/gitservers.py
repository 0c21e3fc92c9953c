"""Loopback git servers for the ``--git`` tests: ``git daemon`` for git:// URLs and git's smart
HTTP backend behind basic auth for a private https-like remote, plus the credential helper
that stands for a user's keychain. Both serve real git's protocol, so the CLI's git talks to
them exactly as it would to GitHub."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from gitrepos import git, hermetic_git_env

START_TIMEOUT = 60.0
"""Generous: a loaded 2-core machine may take long to start git, never this long."""

STOP_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GitDaemon:
    """``git daemon`` serving every repository under ``base_path`` at git://127.0.0.1:PORT/.

    The port is chosen free and then handed to the daemon, so another process may take it in
    between: the daemon then exits before it is ready, and another port is tried."""

    ATTEMPTS = 5

    def __init__(self, base_path: Path) -> None:
        self.base_path = base_path
        self.port = 0
        self.log: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    def __enter__(self) -> GitDaemon:
        for _ in range(self.ATTEMPTS):
            if self._start(_free_port()):
                return self
        raise RuntimeError("git daemon did not start:\n" + "\n".join(self.log))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop()

    def _start(self, port: int) -> bool:
        """Starts the daemon on ``port``; True once it listens, False if it exited first."""
        ready = threading.Event()
        process = subprocess.Popen(
            [
                "git",
                "daemon",
                "--verbose",
                "--reuseaddr",
                "--export-all",
                f"--base-path={self.base_path}",
                "--listen=127.0.0.1",
                f"--port={port}",
            ],
            env=hermetic_git_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # A group of its own: stopping it also stops the children serving connections.
            start_new_session=True,
        )
        reader = threading.Thread(target=self._drain, args=(process, ready), daemon=True)
        reader.start()
        self._process, self._reader, self.port = process, reader, port
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                return False
        return True

    def _drain(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        """Keeps the daemon's --verbose log (it says when it listens) from filling the pipe."""
        assert process.stderr is not None
        for line in process.stderr:
            self.log.append(line.rstrip())
            if "Ready to rumble" in line:
                ready.set()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


@dataclass(frozen=True)
class HttpRequest:
    """One request the smart HTTP server answered, for tests to assert on."""

    method: str
    path: str
    query: str
    authenticated: bool
    """Whether it carried the right user and token."""
    status: int
    chunked: bool
    """Whether the client sent its body with Transfer-Encoding: chunked (git does above
    http.postBuffer)."""
    content_encoding: str | None
    """``gzip`` when git compressed its request body (it does for mid-sized fetch requests)."""


class SmartHttp:
    """git's smart HTTP protocol (``git http-backend`` run as a CGI) on http://127.0.0.1:PORT/,
    serving the bare repositories under ``project_root`` only to requests with HTTP basic auth
    for ``user`` and ``token``: a private repository, as on GitHub."""

    def __init__(self, project_root: Path, user: str, token: str) -> None:
        self.project_root = project_root
        self.user = user
        self.token = token
        self._requests: list[HttpRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the server runs only inside its with-block"
        return self._server.server_address[1]

    def url(self, name: str, credentials: bool = False) -> str:
        """``credentials``: the user and token inside the URL, the way users paste a token
        into a clone URL, which gridctl must then keep out of everything it stores."""
        userinfo = f"{self.user}:{self.token}@" if credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}/{name}.git"

    @property
    def requests(self) -> list[HttpRequest]:
        """The requests answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def __enter__(self) -> SmartHttp:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_GitCgiHandler, site=self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT)

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header carries exactly our user and token."""
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.user) and hmac.compare_digest(token, self.token)

    def record(self, request: HttpRequest) -> None:
        with self._lock:
            self._requests.append(request)


class _GitCgiHandler(BaseHTTPRequestHandler):
    """Runs each authorized request through ``git http-backend`` as RFC 3875 describes."""

    protocol_version = "HTTP/1.1"

    def __init__(self, *args: object, site: SmartHttp, **kwargs: object) -> None:
        self.site = site
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the requests are recorded on the server for tests to read instead."""

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        encoding = self.headers.get("Content-Encoding")
        authenticated = self.site.authorized(self.headers.get("Authorization"))
        body = self._read_body(chunked)
        if authenticated:
            status, headers, content = self._run_backend(path, query, body)
        else:
            status, content = 401, b"Authentication required\n"
            headers = [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Type", "text/plain")]
        request = HttpRequest(self.command, path, query, authenticated, status, chunked, encoding)
        self.site.record(request)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def _read_body(self, chunked: bool) -> bytes:
        """The whole request body, chunked transfer coding removed (a CGI needs a length)."""
        if not chunked:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailer fields, up to the blank line
            pass
        return b"".join(chunks)

    def _run_backend(
        self, path: str, query: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        env = hermetic_git_env(
            {
                "GIT_PROJECT_ROOT": str(self.site.project_root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": urllib.parse.unquote(path),
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                # Authenticated: http-backend then also accepts pushes (receive-pack).
                "REMOTE_USER": self.site.user,
                "REMOTE_ADDR": self.client_address[0],
            }
        )
        if protocol := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = protocol  # protocol v2 is asked for in this header
        if encoding := self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding  # http-backend inflates gzip bodies itself
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=300
        )
        head, separator, content = result.stdout.partition(b"\r\n\r\n")
        if not separator:
            return 500, [("Content-Type", "text/plain")], result.stderr
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name.strip(), value.strip()))
        return status, headers, content


def credential_helper_config(tmp_path: Path, user: str, token: str) -> dict[str, str]:
    """Environment additions that make the user's git find ``user``/``token`` through a
    credential helper, as a keychain or ``gh auth`` would provide them: a global git config
    naming a helper script that answers ``get`` (and ignores ``store`` and ``erase``)."""
    directory = tmp_path / "git-credentials"
    directory.mkdir()
    answer = directory / "answer"
    answer.write_text(f"username={user}\npassword={token}\n")
    helper = directory / "git-credential-keychain"
    helper.write_text(
        "#!/bin/sh\n"
        "# git writes the request's attributes on stdin; only `get` is answered.\n"
        "cat >/dev/null\n"
        f'if [ "$1" = get ]; then cat {shlex.quote(str(answer))}; fi\n'
    )
    helper.chmod(0o700)
    config = directory / "gitconfig"
    git("config", "--file", str(config), "credential.helper", shlex.quote(str(helper)))
    return {"GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1"}
