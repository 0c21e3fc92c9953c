"""S3Store's listing against moto: sizes and ETags from one listing, which is how the web
view's metrics tell the files that changed in a bucket without reading them."""

from __future__ import annotations

from pathlib import Path

import boto3

from gridctl.agent.core.s3store import S3Store
from gridctl.cli.metrics import read_metrics

BUCKET = "gridctl-listing"
ARTIFACTS = "runs/r/e/artifacts/"


class CountingS3Store(S3Store):
    """An S3Store that counts its downloads."""

    def __init__(self, bucket: str, region: str, endpoint_url: str) -> None:
        super().__init__(bucket, region, endpoint_url)
        self.downloads: list[str] = []

    def get_file(self, key: str, dest: Path) -> None:
        self.downloads.append(key)
        super().get_file(key, dest)


def bucket_store(moto: str, monkeypatch) -> CountingS3Store:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto).create_bucket(Bucket=BUCKET)
    return CountingS3Store(BUCKET, "us-east-1", moto)


def test_listing_gives_sizes_and_etags_below_a_folder(moto: str, monkeypatch):
    store = bucket_store(moto, monkeypatch)
    store.put_bytes(ARTIFACTS + "a.txt", b"abc")
    store.put_bytes(ARTIFACTS + "deep/b.txt", b"hello")
    store.put_bytes("runs/r/e/artifacts-other/c.txt", b"not below the folder")

    listed = store.listing(ARTIFACTS)

    assert (
        set(listed) == set(store.list(ARTIFACTS)) == {ARTIFACTS + "a.txt", ARTIFACTS + "deep/b.txt"}
    )
    assert listed[ARTIFACTS + "deep/b.txt"].size == 5
    head = store.client.head_object(Bucket=BUCKET, Key=ARTIFACTS + "a.txt")
    assert listed[ARTIFACTS + "a.txt"].tag == head["ETag"]
    store.put_bytes(ARTIFACTS + "a.txt", b"xyz")
    assert store.listing(ARTIFACTS)[ARTIFACTS + "a.txt"].tag != listed[ARTIFACTS + "a.txt"].tag


def test_metrics_from_a_bucket_are_downloaded_once(moto: str, monkeypatch, tmp_path: Path):
    store = bucket_store(moto, monkeypatch)
    store.put_bytes(ARTIFACTS + "logs/metrics.jsonl", b'{"step": 0, "loss": 1.0}\n')
    store.put_bytes(ARTIFACTS + "metrics.csv", b"step,acc\n0,0.5\n1,0.75\n")
    for _ in range(2):
        metrics = read_metrics(store, ARTIFACTS, tmp_path)
        assert metrics.series == {"loss": [(0, 1.0)], "acc": [(0, 0.5), (1, 0.75)]}
    assert sorted(store.downloads) == [ARTIFACTS + "logs/metrics.jsonl", ARTIFACTS + "metrics.csv"]
