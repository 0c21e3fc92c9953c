"""IAM for tests: what a recorded AWS request asks IAM for, and whether a policy grants it.

moto does not enforce IAM, so the node role's policy is checked as a document: the requests
simulated nodes made (moto's request recorder) become the authorizations AWS would check,
and a small evaluator decides each. It knows what the node role uses: Allow/Deny
statements, ``*``/``?`` wildcards in actions and resources, and StringEquals/StringLike
conditions on keys the request carries (``s3:prefix``, ``aws:ResourceTag/...``); anything
else it refuses to guess about.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/aws4_request")
_LISTING = {
    "list-type",
    "prefix",
    "encoding-type",
    "continuation-token",
    "max-keys",
    "delimiter",
    "start-after",
    "fetch-owner",
    "x-id",
}
"""Query parameters of ListObjects(V2): they do not change the action."""


@dataclass(frozen=True)
class Authorization:
    """One question AWS asks IAM for a request: may this action act on this resource?"""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)
    request: str = ""
    """The request it came from, for messages."""

    def __str__(self) -> str:
        context = "".join(f" {k}={v!r}" for k, v in sorted(self.context.items()))
        return f"{self.action} {self.resource}{context} ({self.request})"


@dataclass(frozen=True)
class Group:
    arn: str
    tags: Mapping[str, str]

    @property
    def context(self) -> dict[str, str]:
        keys = {}
        for key, value in self.tags.items():
            keys[f"aws:ResourceTag/{key}"] = keys[f"autoscaling:ResourceTag/{key}"] = value
        return keys


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _condition_holds(operator: str, key: str, values: list[str], context: Mapping) -> bool:
    """A key the request does not carry fails the condition (no ...IfExists here)."""
    if key not in context:
        return False
    value = context[key]
    if operator == "StringEquals":
        return value in values
    if operator == "StringLike":
        return any(_wildcard(pattern, value) for pattern in values)
    raise ValueError(f"the evaluator does not know the condition operator {operator}")


def _applies(statement: Mapping, auth: Authorization) -> bool:
    if "NotAction" in statement or "NotResource" in statement or "Principal" in statement:
        raise ValueError(f"the evaluator does not know this statement: {statement}")
    actions = as_list(statement["Action"])
    if not any(_wildcard(a, auth.action, ignore_case=True) for a in actions):
        return False
    if not any(_wildcard(r, auth.resource) for r in as_list(statement["Resource"])):
        return False
    return all(
        _condition_holds(operator, key, as_list(values), auth.context)
        for operator, keys in statement.get("Condition", {}).items()
        for key, values in keys.items()
    )


def allowed(policy: Mapping, auth: Authorization) -> bool:
    """IAM's rule for one identity policy: an explicit deny wins, then any allow."""
    effects = {s.get("Effect", "Allow") for s in policy["Statement"] if _applies(s, auth)}
    return "Allow" in effects and "Deny" not in effects


@dataclass(frozen=True)
class Grant:
    """One action on one resource pattern (and one ``s3:prefix`` pattern) of a statement."""

    sid: str
    action: str
    resource: str
    prefix: str | None

    def policy(self, statement: Mapping) -> dict:
        """The statement narrowed to this grant alone."""
        narrowed = {**statement, "Action": [self.action], "Resource": [self.resource]}
        if self.prefix is not None:
            narrowed["Condition"] = {
                operator: {k: [self.prefix] if k == "s3:prefix" else v for k, v in keys.items()}
                for operator, keys in statement["Condition"].items()
            }
        return {"Statement": [narrowed]}


def grants(policy: Mapping) -> list[tuple[Grant, Mapping]]:
    """Every allow of the policy, one (action, resource, prefix) at a time."""
    found = []
    for statement in policy["Statement"]:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        prefixes = [
            prefix
            for keys in statement.get("Condition", {}).values()
            for prefix in as_list(keys.get("s3:prefix", []))
        ] or [None]
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                for prefix in prefixes:
                    grant = Grant(statement.get("Sid", ""), action, resource, prefix)
                    found.append((grant, statement))
    return found


def signer(entry: Mapping) -> tuple[str, str] | None:
    """The access key that signed a recorded request and the service it was signed for;
    None for an unsigned one (moto's own API: no AWS SDK sends those)."""
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    found = _CREDENTIAL.search(headers.get("authorization", ""))
    return (found.group(1), found.group(2)) if found else None


def _body(entry: Mapping) -> bytes:
    body = entry.get("body") or ""
    return base64.b64decode(body) if entry.get("body_encoded") else body.encode()


def _s3(entry: Mapping) -> list[Authorization]:
    url = urlsplit(entry["url"])
    method = entry["method"]
    bucket, _, key = url.path.lstrip("/").partition("/")
    key = unquote(key)
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    where = f"{method} {unquote(url.path)}{'?' + url.query if url.query else ''}"
    bucket_arn = f"arn:aws:s3:::{bucket}"

    def on_object(action: str, object_key: str = key) -> Authorization:
        return Authorization(action, f"{bucket_arn}/{object_key}", {}, where)

    if not key:
        if method == "GET" and set(query) <= _LISTING:
            context = {"s3:prefix": query["prefix"]} if "prefix" in query else {}
            return [Authorization("s3:ListBucket", bucket_arn, context, where)]
        if method == "HEAD" and not query:
            return [Authorization("s3:ListBucket", bucket_arn, {}, where)]
        if method == "POST" and set(query) <= {"delete", "x-id"}:
            keys = [e.text or "" for e in ET.fromstring(_body(entry)).iter() if _local(e) == "Key"]
            return [on_object("s3:DeleteObject", k) for k in keys]
    else:
        if method in ("GET", "HEAD") and set(query) <= {"x-id", "partNumber"}:
            return [on_object("s3:GetObject")]
        copy = "x-amz-copy-source" in {h.lower() for h in entry["headers"]}
        if method == "PUT" and not copy and set(query) <= {"x-id", "partNumber", "uploadId"}:
            return [on_object("s3:PutObject")]
        if method == "POST" and set(query) & {"uploads", "uploadId"}:
            return [on_object("s3:PutObject")]
        if method == "DELETE" and "uploadId" in query:
            return [on_object("s3:AbortMultipartUpload")]
        if method == "DELETE" and set(query) <= {"x-id"}:
            return [on_object("s3:DeleteObject")]
    raise ValueError(f"the evaluator does not know this S3 request: {where}")


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _autoscaling(
    entry: Mapping, groups: Mapping[str, Group], instance_groups: Mapping[str, str]
) -> list[Authorization]:
    params = dict(parse_qsl(_body(entry).decode()))
    action = params["Action"]
    where = f"autoscaling {action} " + " ".join(
        f"{k}={v}" for k, v in sorted(params.items()) if k not in ("Action", "Version")
    )
    if action == "DescribeAutoScalingInstances":
        return [Authorization(f"autoscaling:{action}", "*", {}, where)]
    if action in ("SetDesiredCapacity", "UpdateAutoScalingGroup"):
        group = groups[params["AutoScalingGroupName"]]
    elif action == "TerminateInstanceInAutoScalingGroup":
        group = groups[instance_groups[params["InstanceId"]]]
    else:
        raise ValueError(f"the evaluator does not know this Auto Scaling request: {where}")
    return [Authorization(f"autoscaling:{action}", group.arn, group.context, where)]


def _ec2(entry: Mapping) -> list[Authorization]:
    """EC2's query API: only the Describe call a spot node makes for its price."""
    params = dict(parse_qsl(_body(entry).decode()))
    action = params["Action"]
    where = f"ec2 {action}"
    if action == "DescribeSpotPriceHistory":
        return [Authorization(f"ec2:{action}", "*", {}, where)]
    raise ValueError(f"the evaluator does not know this EC2 request: {where}")


def authorizations(
    entry: Mapping, groups: Mapping[str, Group], instance_groups: Mapping[str, str]
) -> list[Authorization]:
    """What IAM checks for one recorded request (a batch delete checks every key)."""
    _key, service = signer(entry) or ("", "")
    if service == "s3":
        return _s3(entry)
    if service == "autoscaling":
        return _autoscaling(entry, groups, instance_groups)
    if service == "ec2":
        return _ec2(entry)
    raise ValueError(f"the evaluator does not know the service of {entry['method']} {entry['url']}")


def signed_by(entries: Iterable[Mapping], access_key: str) -> list[Mapping]:
    return [e for e in entries if (signer(e) or ("",))[0] == access_key]
