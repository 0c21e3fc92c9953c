"""AWS stand-ins for tests and benchmarks: moto over TLS on 127.0.0.1, Terraform with the
provider from this machine's filesystem mirror (SPEC section 8)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).with_name("motoserver.py")
"""moto_server, with the scaling activities AWS records (see motoserver.py)."""
REGION = "us-east-1"
_SPACE = re.compile(r"\s*")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provider_mirror() -> Path | None:
    """The folder holding registry.terraform.io (the mirror is its parent), if any."""
    known = Path("/opt/tf-plugins")
    if (known / "registry.terraform.io").is_dir():
        return known
    found = subprocess.run(
        [
            "find",
            "/",
            "-type",
            "d",
            "-name",
            "registry.terraform.io",
            "-not",
            "-path",
            "*/.terraform/*",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return Path(found[0]).parent if found else None


def terraform_cli_config(directory: Path, mirror: Path) -> dict[str, str]:
    """Environment for Terraform: the mirror as the only provider source, a shared cache.

    GOGC=400: the AWS provider builds its whole schema each time Terraform starts it (four
    times an apply), mostly garbage; collecting a quarter as often cuts a fifth of its CPU
    (3.5 s to 2.7 s a start, measured with ``terraform providers schema -json``), and
    Terraform's applies are most of an AWS test's CPU (an apply about 15 s)."""
    config = directory / "cli.tfrc"
    (directory / "plugins").mkdir(parents=True, exist_ok=True)
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n'
        "}\n"
        f'plugin_cache_dir = "{directory / "plugins"}"\n'
    )
    return {"TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1", "GOGC": "400"}


def self_signed(directory: Path) -> Path:
    """A certificate (and, beside it, its key) for 127.0.0.1, so moto speaks TLS as AWS does."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / "moto.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path


@dataclass
class Moto:
    url: str
    cert: Path
    process: subprocess.Popen
    recording: Path | None = None
    """Where moto's request recorder writes, once ``record`` has started it."""

    def _post(self, path: str) -> None:
        request = urllib.request.Request(f"{self.url}{path}", method="POST")
        context = ssl.create_default_context(cafile=str(self.cert))
        urllib.request.urlopen(request, timeout=10, context=context)

    def reset(self) -> None:
        self._post("/moto-api/reset")
        if self.recording is not None:
            self._post("/moto-api/recorder/stop-recording")

    def record(self) -> None:
        """Record every request from now on (headers, method, URL, body), from nothing."""
        self._post("/moto-api/recorder/reset-recording")
        self._post("/moto-api/recorder/start-recording")

    def recorded(self) -> list[dict]:
        """The requests recorded so far. Threads of the server append concurrently, so
        entries are decoded one JSON value at a time rather than line by line."""
        assert self.recording is not None, "start_moto(recording=...) was not given"
        text = self.recording.read_text() if self.recording.exists() else ""
        decoder, entries, at = json.JSONDecoder(), [], _SPACE.match(text).end()
        while at < len(text):
            entry, at = decoder.raw_decode(text, at)
            entries.append(entry)
            at = _SPACE.match(text, at).end()
        return entries

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if a loaded machine keeps moto from exiting in good time."""
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto(cert: Path, recording: Path | None = None) -> Moto:
    """``recording``: the file moto's request recorder writes to (off until ``record``)."""
    port = free_port()
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(recording)} if recording else None
    proc = subprocess.Popen(
        [
            sys.executable,
            str(LAUNCHER),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "-s",
            "-c",
            str(cert),
            "-k",
            str(cert.with_suffix(".key")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1, context=context)
            return Moto(url, cert, proc, recording)
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)


def aws_environment(moto: Moto, terraform_cli: dict[str, str], base: dict[str, str]) -> dict:
    """What a user testing against moto exports: fake credentials and the endpoint, and no
    placement groups for gangs (moto has none)."""
    env = {
        **base,
        **terraform_cli,
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_CA_BUNDLE": str(moto.cert),
        "SSL_CERT_FILE": str(moto.cert),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "GRIDCTL_PLACEMENT_GROUP": "off",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def moto_bucket(base: Path, bucket: str) -> Iterator:
    """For benchmarks: moto over TLS, this process's environment pointed at it, and an
    empty bucket; yields a plain boto3 S3 client (the baseline's)."""
    import boto3
    from botocore.config import Config

    moto = start_moto(self_signed(base / "tls"))
    saved = dict(os.environ)
    try:
        os.environ.update(aws_environment(moto, {}, {}))
        client = boto3.session.Session().client(
            "s3", region_name=REGION, config=Config(s3={"addressing_style": "path"})
        )
        client.create_bucket(Bucket=bucket)
        yield client
    finally:
        os.environ.clear()
        os.environ.update(saved)
        moto.stop()
