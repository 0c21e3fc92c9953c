"""The node agent as a wheel: ``gridctl.agent`` alone, built from the installed package.

Nodes install it from the environment's bucket, so they need no access to our package
anywhere else and none of the CLI's dependencies. The wheel is reproducible and its
version carries a content hash, so an unchanged agent is uploaded once.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import gridctl.agent
from gridctl.agent.core.contract import wheel_key

DISTRIBUTION = "gridctl_agent"
REQUIRES = ("boto3>=1.34", "psutil>=5.9", "nvidia-ml-py>=12")
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class AgentWheel:
    filename: str
    data: bytes

    @property
    def key(self) -> str:
        return wheel_key(self.filename)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


NOT_ON_NODES = ("__pycache__", "service")
"""Folders of ``gridctl.agent`` a node never runs: the local backend's service stays home."""


def _sources() -> list[tuple[str, bytes]]:
    root = Path(gridctl.agent.__file__).parent
    files = sorted(
        p for p in root.rglob("*.py") if not set(p.relative_to(root).parts) & set(NOT_ON_NODES)
    )
    return [(f"gridctl/agent/{p.relative_to(root).as_posix()}", p.read_bytes()) for p in files]


def build_agent_wheel() -> AgentWheel:
    sources = _sources()
    content = hashlib.sha256()
    for name, data in sources:
        content.update(name.encode() + b"\0" + data + b"\0")
    version = f"{metadata.version('gridctl')}+{content.hexdigest()[:12]}"
    dist_info = f"{DISTRIBUTION}-{version}.dist-info"
    meta = "\n".join(
        [
            "Metadata-Version: 2.1",
            f"Name: {DISTRIBUTION.replace('_', '-')}",
            f"Version: {version}",
            "Summary: the gridctl node agent",
            "Requires-Python: >=3.10",
            *[f"Requires-Dist: {r}" for r in REQUIRES],
            "",
        ]
    ).encode()
    wheel_info = (
        b"Wheel-Version: 1.0\nGenerator: gridctl\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files = [*sources, (f"{dist_info}/METADATA", meta), (f"{dist_info}/WHEEL", wheel_info)]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{dist_info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in [*files, (f"{dist_info}/RECORD", record.encode())]:
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return AgentWheel(f"{DISTRIBUTION}-{version}-py3-none-any.whl", buffer.getvalue())
