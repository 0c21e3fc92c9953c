"""A stand-in for the AWS Price List Query API (``pricing``), which moto lacks: GetProducts
over the service's JSON protocol on 127.0.0.1, reached through boto3's
``AWS_ENDPOINT_URL_PRICING``. It answers as AWS does, one JSON document per product with its
OnDemand terms. This is AWS's boundary, not gridctl's."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "AWSPriceListService."


def product(instance_type: str, region: str, usd: float) -> str:
    """A GetProducts PriceList entry shaped like AWS's (trimmed to what a reader uses)."""
    sku = f"SKU-{instance_type}-{region}"
    term = f"{sku}.JRTCKXETXF"
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": instance_type,
                    "regionCode": region,
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                },
                "sku": sku,
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    term: {
                        "offerTermCode": "JRTCKXETXF",
                        "sku": sku,
                        "priceDimensions": {
                            f"{term}.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "description": f"${usd} per On Demand Linux {instance_type}",
                                "pricePerUnit": {"USD": f"{usd:.10f}"},
                            }
                        },
                    }
                }
            },
        }
    )


@dataclass
class Pricing:
    """On-demand ``prices`` by (instance type, region code); a pair not there has no product.
    ``calls`` holds each GetProducts request's filters as a field -> value mapping."""

    prices: dict[tuple[str, str], float] = field(default_factory=dict)
    calls: list[dict[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, action: str, request: dict) -> tuple[int, dict]:
        if action != "GetProducts":
            return 400, {"__type": "UnknownOperationException", "message": action}
        filters = {f["Field"]: f["Value"] for f in request.get("Filters", [])}
        self.calls.append(filters)
        key = (filters.get("instanceType", ""), filters.get("regionCode", ""))
        found = [product(*key, self.prices[key])] if key in self.prices else []
        return 200, {"FormatVersion": "aws_v1", "PriceList": found}

    def __enter__(self) -> Pricing:
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
