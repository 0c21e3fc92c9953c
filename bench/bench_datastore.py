"""``gridctl datastore create`` against moto over TLS: a 2,000-file, 200 MiB data set.

First creation as a ratio to a plain 8-thread boto3 upload of the same files (each into a
prefix of its own, the baseline first, in the same process), then the same data created
again unchanged: bytes uploaded (target 0) and time.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from targets import verdict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gridctl.agent.core import datastore  # noqa: E402
from gridctl.agent.core.s3store import S3Store  # noqa: E402
from tests.aws.emulator import REGION, moto_bucket  # noqa: E402

FILES = 2000
MIB = 1 << 20
TOTAL = 200 * MIB
BASELINE_WORKERS = 8
BUCKET = "gridctl-bench-datastore"
RECREATE_TARGET_BYTES = 0


def build_source(root: Path) -> list[Path]:
    """Sizes spread around 100 KiB like image shards; random bytes, so nothing compresses."""
    rng = random.Random(0)
    weights = [rng.uniform(0.2, 1.8) for _ in range(FILES)]
    scale = TOTAL / sum(weights)
    files = []
    for i, weight in enumerate(weights):
        path = root / f"shard{i // 100:02d}" / f"{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(int(weight * scale)))
        files.append(path)
    return files


def baseline_upload(client, root: Path, files: list[Path]) -> float:
    start = time.perf_counter()

    def put(path: Path) -> None:
        client.upload_file(str(path), BUCKET, f"baseline/{path.relative_to(root).as_posix()}")

    with ThreadPoolExecutor(BASELINE_WORKERS) as pool:
        for _ in pool.map(put, files):
            pass
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-") as tmp:
        base = Path(tmp)
        with moto_bucket(base, BUCKET) as client:
            source = base / "source"
            files = build_source(source)
            baseline = baseline_upload(client, source, files)
            store = S3Store(BUCKET, REGION)
            start = time.perf_counter()
            first = datastore.create(store, "bench", source)
            created = time.perf_counter() - start
            start = time.perf_counter()
            again = datastore.create(store, "bench", source)
            recreated = time.perf_counter() - start
    mb = first.bytes / 1e6
    print(
        f"datastore create, {first.files} files {mb:.0f} MB to S3 (moto, TLS):"
        f" gridctl {created:.2f} s ({mb / created:.0f} MB/s) / boto3 {BASELINE_WORKERS} threads"
        f" {baseline:.2f} s ({mb / baseline:.0f} MB/s) = ratio {created / baseline:.2f}"
    )
    print(
        f"datastore re-create unchanged: {again.uploaded_bytes} bytes uploaded"
        f" {verdict(again.uploaded_bytes, RECREATE_TARGET_BYTES)} in {recreated:.2f} s"
        f" (version {again.version})"
    )
    return 0 if again.uploaded_bytes <= RECREATE_TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
