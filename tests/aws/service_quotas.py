"""A stand-in for AWS Service Quotas, which moto lacks for EC2: GetServiceQuota and
GetAWSDefaultServiceQuota over the service's JSON protocol on 127.0.0.1, reached through
boto3's ``AWS_ENDPOINT_URL_SERVICE_QUOTAS``. This is AWS's boundary, not gridctl's."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "ServiceQuotasV20190624."


@dataclass
class ServiceQuotas:
    """``applied`` values (an account's increases) and AWS's ``defaults``, by quota code;
    a code in neither is unknown (NoSuchResourceException). ``denied`` answers every call
    with AccessDeniedException, as for a user without servicequotas:Get* permissions."""

    applied: dict[str, float] = field(default_factory=dict)
    defaults: dict[str, float] = field(default_factory=dict)
    denied: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, action: str, request: dict) -> tuple[int, dict]:
        code = str(request.get("QuotaCode"))
        self.calls.append((action, code))
        if self.denied:
            return 400, {"__type": "AccessDeniedException", "message": "not authorized"}
        values = {"GetServiceQuota": self.applied, "GetAWSDefaultServiceQuota": self.defaults}
        if action not in values:
            return 400, {"__type": "UnknownOperationException", "message": action}
        if code not in values[action]:
            return 400, {"__type": "NoSuchResourceException", "message": f"no {code}"}
        quota = {"ServiceCode": request.get("ServiceCode"), "QuotaCode": code}
        return 200, {"Quota": {**quota, "Value": values[action][code], "Unit": "None"}}

    def __enter__(self) -> ServiceQuotas:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                action = self.headers.get("X-Amz-Target", "").removeprefix(PREFIX)
                status, reply = stub.answer(action, json.loads(body or b"{}"))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
