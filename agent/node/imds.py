"""The EC2 instance metadata service (IMDSv2): how a node learns who and where it is.

Only the standard library, so the agent needs nothing extra to find its bucket. Every
request carries a session token (launch templates require IMDSv2); the token is cached and
renewed shortly before it expires or as soon as the service refuses it.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL = 21600
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
TAGS_PATH = "/latest/meta-data/tags/instance"
_RETRIED_STATUSES = (429, 500, 502, 503, 504)


class IMDSError(RuntimeError):
    """The metadata service cannot be reached or refuses to answer."""


@dataclass(frozen=True)
class Identity:
    instance_id: str
    region: str
    availability_zone: str | None
    instance_type: str | None
    image: str | None = None
    """The AMI id: part of a venv's key, since the AMI's own Python is the venv's base."""


class IMDSClient:
    def __init__(
        self,
        endpoint: str | None = None,
        *,
        token_ttl: int = TOKEN_TTL,
        timeout: float = 2.0,
        attempts: int = 4,
        backoff: float = 0.25,
    ) -> None:
        """``endpoint`` defaults to ``AWS_EC2_METADATA_SERVICE_ENDPOINT``, then the link-local
        address; connection errors are retried ``attempts`` times with doubling backoff."""
        endpoint = endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        if urllib.parse.urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise IMDSError(f"not an http(s) metadata endpoint: {self.endpoint}")
        self.token_ttl = token_ttl
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        # A proxy from the environment must never see metadata requests.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def get(self, path: str) -> str | None:
        """The text at ``path`` (e.g. ``/latest/meta-data/instance-id``); None on 404."""
        status, body = self._get(path, renew=False)
        if status == 401:  # expired or revoked early (e.g. the service restarted)
            status, body = self._get(path, renew=True)
        if status == 404:
            return None
        if status != 200:
            raise IMDSError(f"metadata service answered {status} for {path}")
        return body.decode()

    def identity(self) -> Identity:
        instance_id = self.get("/latest/meta-data/instance-id")
        zone = self.get("/latest/meta-data/placement/availability-zone")
        region = self.get("/latest/meta-data/placement/region") or (zone and zone[:-1])
        if not instance_id or not region:
            raise IMDSError("the metadata service does not give an instance id and a region")
        return Identity(
            instance_id,
            region,
            zone,
            self.get("/latest/meta-data/instance-type"),
            self.get("/latest/meta-data/ami-id"),
        )

    def local_ipv4(self) -> str:
        """The instance's private address, where a gang's peers reach it (SPEC section 9)."""
        address = self.get("/latest/meta-data/local-ipv4")
        if not address:
            raise IMDSError("the metadata service does not give this instance's local-ipv4")
        return address

    def tags(self) -> dict[str, str]:
        """The instance's tags; empty when tags in instance metadata are not enabled."""
        listing = self.get(TAGS_PATH)
        if listing is None:
            return {}
        found: dict[str, str] = {}
        for key in filter(None, listing.splitlines()):
            value = self.get(f"{TAGS_PATH}/{urllib.parse.quote(key, safe=':@+=,')}")
            if value is not None:
                found[key] = value
        return found

    def _get(self, path: str, *, renew: bool) -> tuple[int, bytes]:
        return self._request("GET", path, {TOKEN_HEADER: self._current_token(renew=renew)})

    def _current_token(self, *, renew: bool) -> str:
        with self._lock:
            if renew or self._token is None or time.monotonic() >= self._renew_at:
                started = time.monotonic()
                status, body = self._request(
                    "PUT", "/latest/api/token", {TTL_HEADER: str(self.token_ttl)}
                )
                if status != 200:
                    raise IMDSError(f"metadata service refused a session token ({status})")
                self._token = body.decode()
                # Renew with a margin, so a request never goes out with a token about to lapse.
                margin = min(60.0, self.token_ttl / 10)
                self._renew_at = started + self.token_ttl - margin
            return self._token

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body), retrying connection errors and throttling with backoff."""
        url = self.endpoint + path  # http(s), checked in __init__
        request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
        error: Exception | None = None
        for attempt in range(self.attempts):
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                if exc.code not in _RETRIED_STATUSES or attempt == self.attempts - 1:
                    return exc.code, exc.read()
                error = exc
            except OSError as exc:  # URLError, refused, reset, timed out
                error = exc
            if attempt < self.attempts - 1:
                time.sleep(self.backoff * 2**attempt)
        raise IMDSError(f"metadata service unreachable at {self.endpoint}: {error}")
