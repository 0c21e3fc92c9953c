"""The IMDSv2 client against a tiny metadata service that enforces session tokens."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from gridctl.agent.node.imds import Identity, IMDSClient, IMDSError

META = "/latest/meta-data"


class FakeIMDS:
    """Tokens expire after the TTL the client asked for; ``failures`` 503s come first."""

    def __init__(self) -> None:
        self.values = {
            f"{META}/instance-id": "i-0abc",
            f"{META}/instance-type": "t3.micro",
            f"{META}/placement/availability-zone": "eu-west-1b",
            f"{META}/placement/region": "eu-west-1",
        }
        self.tokens: dict[str, float] = {}
        self.ttls: list[str] = []
        self.failures = 0
        self.refused = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def set_tags(self, tags: dict[str, str]) -> None:
        self.values[f"{META}/tags/instance"] = "\n".join(tags)
        for key, value in tags.items():
            self.values[f"{META}/tags/instance/{key}"] = value

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                if self.path != "/latest/api/token":
                    return self._reply(404)
                ttl = self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
                with fake.lock:
                    fake.ttls.append(ttl)
                    token = f"token-{len(fake.ttls)}"
                    fake.tokens[token] = time.monotonic() + int(ttl)
                self._reply(200, token)

            def do_GET(self) -> None:
                with fake.lock:
                    if fake.failures:
                        fake.failures -= 1
                        return self._reply(503)
                    expiry = fake.tokens.get(self.headers.get("X-aws-ec2-metadata-token", ""))
                if expiry is None or time.monotonic() >= expiry:
                    with fake.lock:
                        fake.refused += 1
                    return self._reply(401)
                value = fake.values.get(unquote(self.path))
                self._reply(404) if value is None else self._reply(200, value)

            def _reply(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def imds() -> Iterator[FakeIMDS]:
    fake = FakeIMDS()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_the_service_refuses_requests_without_a_token(imds):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{imds.url}{META}/instance-id", timeout=2)
    assert refused.value.code == 401


def test_one_token_serves_many_requests(imds):
    client = IMDSClient(imds.url)
    assert client.get(f"{META}/instance-id") == "i-0abc"
    assert client.get(f"{META}/instance-type") == "t3.micro"
    assert imds.ttls == ["21600"]


def test_a_missing_path_is_none(imds):
    assert IMDSClient(imds.url).get(f"{META}/spot/instance-action") is None


def test_the_token_is_renewed_before_it_expires(imds):
    client = IMDSClient(imds.url, token_ttl=1)
    assert client.get(f"{META}/instance-id") == "i-0abc"
    time.sleep(1.0)
    assert client.get(f"{META}/instance-id") == "i-0abc"
    assert imds.ttls == ["1", "1"]
    assert imds.refused == 0


def test_a_refused_token_is_replaced_and_the_request_repeated(imds):
    client = IMDSClient(imds.url)
    client.get(f"{META}/instance-id")
    imds.tokens.clear()  # the service restarted and forgot its tokens
    assert client.get(f"{META}/instance-id") == "i-0abc"
    assert len(imds.ttls) == 2
    assert imds.refused == 1


def test_identity(imds):
    assert IMDSClient(imds.url).identity() == Identity(
        "i-0abc", "eu-west-1", "eu-west-1b", "t3.micro"
    )


def test_local_ipv4_is_where_a_gangs_peers_reach_the_node(imds):
    client = IMDSClient(imds.url)
    with pytest.raises(IMDSError, match="local-ipv4"):
        client.local_ipv4()
    imds.values[f"{META}/local-ipv4"] = "10.0.3.7"
    assert client.local_ipv4() == "10.0.3.7"


def test_the_region_falls_back_to_the_availability_zone(imds):
    del imds.values[f"{META}/placement/region"]
    assert IMDSClient(imds.url).identity().region == "eu-west-1"


def test_tags_quote_their_keys(imds):
    imds.set_tags({"gridctl:run": "bold-fox", "Name": "bold-fox-exp0", "team name": "ml"})
    assert IMDSClient(imds.url).tags() == {
        "gridctl:run": "bold-fox",
        "Name": "bold-fox-exp0",
        "team name": "ml",
    }


def test_no_tags_when_metadata_tags_are_disabled(imds):
    assert IMDSClient(imds.url).tags() == {}


def test_the_endpoint_comes_from_the_environment(imds, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url + "/")
    client = IMDSClient()
    assert client.endpoint == imds.url
    assert client.get(f"{META}/instance-id") == "i-0abc"


def test_throttling_is_retried(imds):
    imds.failures = 2
    assert IMDSClient(imds.url, backoff=0.01).get(f"{META}/instance-id") == "i-0abc"


def test_an_unreachable_service_fails_after_a_few_quick_attempts(imds):
    url = imds.url
    imds.server.shutdown()
    imds.server.server_close()
    started = time.monotonic()
    with pytest.raises(IMDSError, match="unreachable"):
        IMDSClient(url, attempts=3, backoff=0.01, timeout=0.5).get(f"{META}/instance-id")
    assert time.monotonic() - started < 2
