"""The real ``gridctl ui`` as tests use it: a process on a free port, asked over HTTP."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
from dataclasses import dataclass

URL = re.compile(r"^gridctl ui: (http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)) \(Ctrl-C to stop\)$")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> object:
        assert self.headers["content-type"] == "application/json", self.headers
        return json.loads(self.body)


class WebView:
    """``gridctl ui --port 0`` started by ``gridctl.popen``; stopped as Ctrl-C stops it."""

    def __init__(self, gridctl) -> None:
        self.process: subprocess.Popen = gridctl.popen("ui", "--port", "0")
        line = self.process.stdout.readline().strip()  # printed once the port is bound
        found = URL.match(line)
        if found is None:
            self.process.kill()
            said = self.process.stderr.read()
            raise AssertionError(f"gridctl ui printed {line!r}; stderr: {said}")
        self.url, self.port, self.token = found.group(1), int(found.group(2)), found.group(3)
        self.base = self.url.split("/?", 1)[0]

    def get(
        self, path: str, *, token: bool = True, method: str = "GET", headers: dict | None = None
    ) -> Reply:
        """``path`` goes on the wire exactly as written (no client-side normalising, so
        escapes reach the server as an attacker would send them)."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"token {self.token}"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, headers=sent)
            response = connection.getresponse()
            body = response.read()
            found = {k.lower(): v for k, v in response.getheaders()}
            return Reply(response.status, found, body)
        finally:
            connection.close()

    def api(self, path: str) -> object:
        reply = self.get(path)
        assert reply.status == 200, (path, reply.status, reply.body)
        return reply.json()

    def stop(self) -> None:
        self.process.send_signal(2)  # SIGINT: Ctrl-C
        self.process.communicate(timeout=60)
