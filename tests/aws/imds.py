"""A stand-in for one EC2 instance's metadata service (IMDSv2 only), so an agent on a
simulated node learns its identity, tags, user data and spot notices the way it would on
a real instance: over HTTP, with session tokens required."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

ACCOUNT_ID = "123456789012"
MAX_TOKEN_TTL = 21600
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


def iso_utc(moment: datetime) -> str:
    """The timestamp format IMDS uses in its notices, e.g. 2024-05-01T12:00:00Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Hit:
    """One request as the service saw it, so tests can assert how the agent talked to it."""

    method: str
    path: str
    status: int
    token: bool
    """Whether the request carried a valid, unexpired token."""


class MetadataService:
    """IMDSv2 with "required" semantics for one instance, on an ephemeral loopback port.

    Identity, tags and user data are plain attributes: change them any time.
    """

    def __init__(
        self,
        instance_id: str = "i-0123456789abcdef0",
        *,
        instance_type: str = "t3.micro",
        region: str = "us-east-1",
        availability_zone: str = "us-east-1a",
        ami_id: str = "ami-12c6146b",
        tags: dict[str, str] | None = None,
        user_data: bytes | None = None,
        local_ipv4: str = "127.0.0.1",
    ) -> None:
        """``local_ipv4``: the node's own address; 127.0.0.N is a distinct loopback address
        on Linux, so simulated nodes of a gang reach each other as real ones would."""
        self.instance_id = instance_id
        self.instance_type = instance_type
        self.region = region
        self.availability_zone = availability_zone
        self.ami_id = ami_id
        self.tags: dict[str, str] = dict(tags or {})
        self.user_data = user_data
        self.local_ipv4 = local_ipv4
        self.spot_action_time: datetime | None = None
        self.rebalance_time: datetime | None = None
        self.hits: list[Hit] = []
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("metadata service not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MetadataService:
        if self._server is not None:
            return self
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how long stop() waits
            name=f"imds-{self.instance_id}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> MetadataService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def notify_spot_interruption(self, seconds_ahead: float = 120) -> datetime:
        """Post a spot interruption notice; returns the announced termination time."""
        self.spot_action_time = datetime.now(timezone.utc) + timedelta(seconds=seconds_ahead)
        return self.spot_action_time

    def recommend_rebalance(self) -> datetime:
        """Post a rebalance recommendation (an early warning, no deadline)."""
        self.rebalance_time = datetime.now(timezone.utc)
        return self.rebalance_time

    def count(self, path: str, *, token: bool | None = None) -> int:
        """Requests for `path` (optionally only those with or without a valid token)."""
        with self._lock:
            hits = list(self.hits)
        return sum(1 for h in hits if h.path == path and (token is None or h.token == token))

    def identity_document(self) -> dict[str, str]:
        return {
            "accountId": ACCOUNT_ID,
            "architecture": "x86_64",
            "availabilityZone": self.availability_zone,
            "imageId": self.ami_id,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "region": self.region,
            "version": "2017-09-30",
        }

    # Request handling (called from server threads).

    def _issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def _token_valid(self, token: str | None) -> bool:
        with self._lock:
            expiry = self._tokens.get(token or "")
        return expiry is not None and time.monotonic() < expiry

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)

    def _resolve(self, path: str) -> tuple[bytes, str] | None:
        """The body and content type for a metadata path, None when AWS would say 404."""
        text = "text/plain"
        meta = "/latest/meta-data/"
        simple = {
            meta + "instance-id": self.instance_id,
            meta + "instance-type": self.instance_type,
            meta + "ami-id": self.ami_id,
            meta + "placement/region": self.region,
            meta + "placement/availability-zone": self.availability_zone,
            meta + "local-ipv4": self.local_ipv4,
        }
        if path in simple:
            return simple[path].encode(), text
        tags = meta + "tags/instance"
        if path.rstrip("/") == tags:
            return "\n".join(self.tags).encode(), text
        if path.startswith(tags + "/"):
            value = self.tags.get(path[len(tags) + 1 :])
            return None if value is None else (value.encode(), text)
        if path == "/latest/user-data":
            return None if self.user_data is None else (self.user_data, "application/octet-stream")
        if path == "/latest/dynamic/instance-identity/document":
            return json.dumps(self.identity_document(), indent=2).encode(), text
        if path == meta + "spot/instance-action" and self.spot_action_time is not None:
            notice = {"action": "terminate", "time": iso_utc(self.spot_action_time)}
            return json.dumps(notice).encode(), text
        if path == meta + "events/recommendations/rebalance" and self.rebalance_time is not None:
            return json.dumps({"noticeTime": iso_utc(self.rebalance_time)}).encode(), text
        return None


def _handler_for(service: MetadataService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self) -> None:
            path = unquote(urlsplit(self.path).path)
            if path != "/latest/api/token":
                return self._reply(path, 404, False)
            if self.headers.get("X-Forwarded-For") is not None:
                return self._reply(path, 403, False)
            try:
                ttl = int(self.headers.get(TTL_HEADER, ""))
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= MAX_TOKEN_TTL:
                return self._reply(path, 400, False)
            body = service._issue_token(ttl).encode()
            self._reply(path, 200, False, body, {TTL_HEADER: str(ttl)})

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            if not service._token_valid(self.headers.get(TOKEN_HEADER)):
                return self._reply(path, 401, False)
            found = service._resolve(path)
            if found is None:
                return self._reply(path, 404, True)
            body, content_type = found
            self._reply(path, 200, True, body, {"Content-Type": content_type})

        def _reply(
            self,
            path: str,
            status: int,
            token: bool,
            body: bytes = b"",
            headers: dict[str, str] | None = None,
        ) -> None:
            service._record(Hit(self.command, path, status, token))
            self.send_response(status)
            for name, value in {"Content-Type": "text/plain", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the hit log is what tests look at."""

    return Handler
