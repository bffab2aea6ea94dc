"""Prompt-URL hits with images in a bucket (S3, streamed and redirected) against the local
folder, in the same run.

Runs on loopback only: its own Redis, moto's S3 server (`python -m moto.server`, a separate
process), and three `imagine web` processes sharing that Redis and one cached prompt URL: one
with the image in a folder, one streaming it from the bucket, one redirecting to a presigned
URL (IMAGINE_S3_REDIRECT=true). 50 concurrent keep-alive clients (aiohttp) in this process;
the rounds alternate between the three so drift on a shared machine hits them alike.

A redirect is counted when the web app answers 302 (the client would then fetch the image
from the bucket, which is S3's throughput, not ours); each round checks once that the
redirect's URL serves the image.

    python -m bench.storage [--requests 2000] [--rounds 3] [--clients 50]

The last line is `s3_stream_ratio=… s3_redirect_ratio=…`: hits per second from the bucket,
streamed and redirected, over hits per second from the folder (medians of per-round ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import boto3
from botocore.config import Config

from bench.web import PROMPT, THREADS, bench_png, p99, stop_processes, wait_http
from bots.limits import Limits
from bots.web.cache import PromptCache
from bots.web.query import cache_key, read_query
from settings import Settings
from tasks.core.storage import Storage, open_storage
from tasks.local.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "imagine-bench"
AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


async def load(url: str, total: int, clients: int, status: int) -> tuple[float, list[float]]:
    """`total` GETs (redirects not followed), each expected to answer `status`."""
    latencies: list[float] = []
    remaining = total

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            async with session.get(url, allow_redirects=False) as response:
                await response.read()
                if response.status != status:
                    raise RuntimeError(f"{url} answered {response.status}, not {status}")
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - started, latencies


def measure(name: str, url: str, total: int, clients: int, status: int = 200) -> float:
    asyncio.run(load(url, min(total // 10, 300), clients, status))  # warm up
    seconds, latencies = asyncio.run(load(url, total, clients, status))
    rps = total / seconds
    print(f"{name}: {total} requests, {seconds:.2f} s, {rps:.0f} req/s, p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99(latencies) * 1000:.1f} ms",
          flush=True)
    return rps


def check_redirect(url: str, png: bytes) -> None:
    """The redirect's Location serves the very image (followed once, outside the timing)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        if response.read() != png:
            raise RuntimeError("the presigned URL did not serve the image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imagine-bench-storage-") as tmp:
        work = Path(tmp)
        (work / "redis").mkdir()
        redis_server = EmbeddedRedis(work / "redis", port=free_port(), appendonly=False)
        redis_server.start()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            s3_port = free_port()
            endpoint = f"http://127.0.0.1:{s3_port}"
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(f"{endpoint}/")
            os.environ.update(AWS)
            boto3.client("s3", endpoint_url=endpoint, config=Config(
                s3={"addressing_style": "path"})).create_bucket(Bucket=BUCKET)

            base_env = {**os.environ, "IMAGINE_REDIS_URL": redis_server.url,
                        "IMAGINE_DATA_DIR": str(work / "data"),
                        "IMAGINE_STORAGE_DIR": str(work / "images"),
                        "IMAGINE_MODEL": "bench/model", "IMAGINE_WEB_THREADS": str(THREADS),
                        "IMAGINE_RATE_LIMIT_PER_MINUTE": "1000000"}
            for key in ("IMAGINE_URL_SECRET", "IMAGINE_EMBED_WAIT", "IMAGINE_STORAGE_URL",
                        "IMAGINE_S3_REDIRECT"):
                base_env.pop(key, None)
            s3_env = {"IMAGINE_STORAGE_URL": f"s3://{BUCKET}/images",
                      "IMAGINE_S3_ENDPOINT": endpoint}
            variants = {"folder": {}, "s3 stream": s3_env,
                        "s3 redirect": {**s3_env, "IMAGINE_S3_REDIRECT": "true"}}

            # One 512 px image in the folder, in the bucket, and in the prompt URL cache.
            settings = Settings(_env_file=None, redis_url=redis_server.url,
                                storage_dir=work / "images",
                                model="bench/model")  # type: ignore[call-arg]
            png = bench_png()
            name = Storage(settings.images_dir).put(png)
            bucket = settings.model_copy(update={"storage_url": s3_env["IMAGINE_STORAGE_URL"],
                                                 "s3_endpoint": endpoint})
            if open_storage(bucket).put(png) != name:
                raise RuntimeError("the bucket named the image differently from the folder")
            query = read_query({k: [v] for k, v in PROMPT.items()},
                               Limits.from_settings(settings))
            key = cache_key(query.request, settings.model_sources["default"])
            PromptCache(redis_server.client(), pending_ttl=3600).remember(key, "bench", name)
            print(f"image: {len(png)} bytes; S3: moto server at {endpoint}", flush=True)

            urls = {}
            for variant, extra in variants.items():
                port = free_port()
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "bots.cli", "web", "--loglevel", "error"],
                    env={**base_env, **extra, "IMAGINE_WEB_PORT": str(port)}, cwd=ROOT))
                base = f"http://127.0.0.1:{port}"
                wait_http(f"{base}/healthz")
                urls[variant] = (f"{base}/?prompt={PROMPT['prompt'].replace(' ', '+')}"
                                 f"&ar={PROMPT['ar']}")

            rates: dict[str, list[float]] = {variant: [] for variant in variants}
            for _round in range(args.rounds):
                check_redirect(urls["s3 redirect"], png)
                for variant, url in urls.items():
                    status = 302 if variant == "s3 redirect" else 200
                    rates[variant].append(measure(f"hits, {variant}", url, args.requests,
                                                  args.clients, status))
            stream = statistics.median(
                s / f for s, f in zip(rates["s3 stream"], rates["folder"], strict=True))
            redirect = statistics.median(
                r / f for r, f in zip(rates["s3 redirect"], rates["folder"], strict=True))
            print("medians: " + ", ".join(f"{v} {statistics.median(r):.0f} req/s"
                                          for v, r in rates.items()), flush=True)
            print(f"s3_stream_ratio={stream:.2f} s3_redirect_ratio={redirect:.2f}")
        finally:
            stop_processes(processes)
            redis_server.stop()


if __name__ == "__main__":
    main()
