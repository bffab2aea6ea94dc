"""Prompt URL serving: cache-hit throughput and p99 against a static file server, and the miss
path's time to a placeholder.

Runs on loopback only: its own Redis, `imagine web` (waitress) and a minimal static server
(waitress too, same thread count, serving the same file with an ETag) as separate processes;
50 concurrent keep-alive clients (aiohttp) in this process, a bounded number of requests each.
No worker runs, so misses stay queued and always end in a placeholder.

    python -m bench.web [--requests 3000] [--rounds 3] [--clients 50] [--padded 20000]

The last line is `hit_rps=… hit_p99_ms=… baseline_ratio=… placeholder_ms=… rss_before_mib=…
rss_after_mib=…`, where
baseline_ratio = hit_rps / static_rps (median over alternating rounds) and placeholder_ms
is the median time to a placeholder with the default IMAGINE_EMBED_WAIT (what a Markdown
image proxy sees on a cold URL); the RSS figures are the web process's memory before and after
--padded distinct spellings (extra spaces) of the cached prompt, all cache hits.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bots.limits import Limits
from bots.web.cache import PromptCache
from bots.web.query import cache_key, read_query
from settings import Settings
from tasks.core.storage import Storage
from tasks.local.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent

PROMPT = {"prompt": "a lighthouse at dusk, oil painting", "ar": "1:1"}
THREADS = 16


def bench_png(size: int = 512) -> bytes:
    """A 512 px PNG about as large as a real generated one (smooth shapes plus grain)."""
    from PIL import Image, ImageDraw, ImageFilter

    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for i in range(12):
        draw.ellipse((i * 37 % size, i * 53 % size, i * 37 % size + 120, i * 53 % size + 90),
                     fill=(i * 20 % 255, 90 + i * 9, 200 - i * 11))
    image = image.filter(ImageFilter.GaussianBlur(3))
    noise = Image.effect_noise((size, size), 24).convert("RGB")
    image = Image.blend(image, noise, 0.18)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# --- the baseline: a minimal static file server ---------------------------------------------

def serve_static(path: str, port: int, threads: int) -> None:
    import waitress

    data = Path(path).read_bytes()
    etag = '"' + Path(path).stem + '"'

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        if environ.get("HTTP_IF_NONE_MATCH") == etag:
            start_response("304 Not Modified", [("ETag", etag)])
            return [b""]
        start_response("200 OK", [("Content-Type", "image/png"),
                                  ("Content-Length", str(len(data))), ("ETag", etag),
                                  ("Cache-Control", "public, max-age=31536000, immutable")])
        return [data]

    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, ident="static")


# --- load ------------------------------------------------------------------------------------

async def load(url: str | list[str], total: int, clients: int
               ) -> tuple[float, list[float], int]:
    """`total` GETs from `clients` concurrent keep-alive clients: (seconds, latencies, bytes).

    With a list of URLs, request i goes to URL i (modulo the list's length).
    """
    urls = [url] if isinstance(url, str) else url
    latencies: list[float] = []
    received = 0
    remaining = total

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, received
        while remaining > 0:
            remaining -= 1
            target = urls[remaining % len(urls)]
            started = time.perf_counter()
            async with session.get(target) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{target} answered {response.status}")
            latencies.append(time.perf_counter() - started)
            received += len(body)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - started, latencies, received


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def wait_http(url: str, timeout: float = 60.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # answering, even if unhealthy
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def measure(name: str, url: str, total: int, clients: int) -> tuple[float, float]:
    asyncio.run(load(url, min(total // 10, 300), clients))  # warm up connections and caches
    seconds, latencies, received = asyncio.run(load(url, total, clients))
    rps = total / seconds
    print(f"{name}: {total} requests, {clients} clients, {seconds:.2f} s, {rps:.0f} req/s, "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99(latencies) * 1000:.1f} ms, "
          f"{received / seconds / 2**20:.0f} MiB/s", flush=True)
    return rps, p99(latencies) * 1000


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def padded_urls(base: str, count: int) -> list[str]:
    """`count` distinct spellings of the cached prompt: extra spaces between its words.

    Each is the same image (the grammar joins words with one space), so every request is a
    cache hit; a memo keyed by the raw query string would keep one entry per spelling.
    """
    words = PROMPT["prompt"].split(" ")
    gaps = len(words) - 1
    urls = []
    for i in range(count):
        gap, extra = i % gaps, 1 + i // gaps
        spaced = [w + ("+" * (1 + extra) if g == gap else "+") for g, w in enumerate(words[:-1])]
        urls.append(f"{base}/?prompt={''.join(spaced)}{words[-1]}&ar={PROMPT['ar']}")
    return urls


def padded_memory(base: str, pid: int, count: int, clients: int) -> tuple[float, float]:
    """RSS of the web process before and after `count` distinct padded-prompt hits."""
    urls = padded_urls(base, count)
    asyncio.run(load(urls[:200], 200, clients))  # the memo and connections warmed
    before = rss_mib(pid)
    seconds, _latencies, _received = asyncio.run(load(urls, count, clients))
    after = rss_mib(pid)
    print(f"{count} distinct padded-prompt hits in {seconds:.1f} s: web RSS {before:.1f} → "
          f"{after:.1f} MiB ({after - before:+.1f} MiB)", flush=True)
    return before, after


def placeholder_times(base: str, count: int, wait: str | None) -> list[float]:
    import urllib.parse
    import urllib.request

    times = []
    for i in range(count):
        params = {"prompt": f"bench miss {wait} {i} {time.time_ns()}"}
        if wait is not None:
            params["wait"] = wait
        started = time.perf_counter()
        with urllib.request.urlopen(f"{base}/?{urllib.parse.urlencode(params)}",
                                    timeout=60) as response:
            response.read()
            if response.headers["Cache-Control"] != "no-store":
                raise RuntimeError("a miss did not answer with a placeholder")
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per round and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--misses", type=int, default=20)
    parser.add_argument("--padded", type=int, default=20_000,
                        help="distinct padded-prompt hits for the memory check (0: skip)")
    parser.add_argument("--static-server", nargs=3, metavar=("PATH", "PORT", "THREADS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.static_server:
        path, port, threads = args.static_server
        serve_static(path, int(port), int(threads))
        return

    with tempfile.TemporaryDirectory(prefix="imagine-bench-web-") as tmp:
        work = Path(tmp)
        redis_server = EmbeddedRedis(work / "redis", port=free_port(), appendonly=False)
        (work / "redis").mkdir()
        redis_server.start()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            web_port, static_port = free_port(), free_port()
            env = {**os.environ, "IMAGINE_REDIS_URL": redis_server.url,
                   "IMAGINE_DATA_DIR": str(work / "data"),
                   "IMAGINE_STORAGE_DIR": str(work / "images"),
                   "IMAGINE_MODEL": "bench/model", "IMAGINE_WEB_PORT": str(web_port),
                   "IMAGINE_WEB_THREADS": str(THREADS),
                   "IMAGINE_RATE_LIMIT_PER_MINUTE": "1000000",
                   "IMAGINE_MAX_QUEUE": "100000", "IMAGINE_MAX_JOBS_PER_USER": "100000"}
            env.pop("IMAGINE_URL_SECRET", None)
            env.pop("IMAGINE_EMBED_WAIT", None)
            settings = Settings(_env_file=None, redis_url=redis_server.url,
                                storage_dir=work / "images",
                                model="bench/model")  # type: ignore[call-arg]

            # Put one 512 px image in storage and in the prompt URL cache, as a drawn one is.
            png = bench_png()
            name = Storage(settings.images_dir).put(png)
            query = read_query({k: [v] for k, v in PROMPT.items()},
                               Limits.from_settings(settings))
            key = cache_key(query.request, settings.model_sources["default"])
            PromptCache(redis_server.client(), pending_ttl=3600).remember(key, "bench", name)
            print(f"image: {query.request.width}x{query.request.height} PNG, {len(png)} bytes",
                  flush=True)

            processes.append(subprocess.Popen(
                [sys.executable, "-m", "bots.cli", "web", "--loglevel", "error"], env=env,
                cwd=ROOT))
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "bench.web", "--static-server",
                 str(Storage(settings.images_dir).path(name)), str(static_port), str(THREADS)],
                cwd=ROOT))
            base = f"http://127.0.0.1:{web_port}"
            static = f"http://127.0.0.1:{static_port}/image.png"
            wait_http(f"{base}/healthz")
            wait_http(static)

            hit_url = f"{base}/?prompt={PROMPT['prompt'].replace(' ', '+')}&ar={PROMPT['ar']}"
            # Alternate the two in rounds: on a shared machine the load drifts, and a ratio
            # of neighbouring measurements drifts far less than one of distant ones.
            statics, hits = [], []
            for _round in range(args.rounds):
                statics.append(measure("static baseline", static, args.requests, args.clients))
                hits.append(measure("prompt URL hits", hit_url, args.requests, args.clients))
            static_rps = statistics.median(rps for rps, _ in statics)
            hit_rps = statistics.median(rps for rps, _ in hits)
            hit_p99 = statistics.median(p for _, p in hits)
            ratio = statistics.median(h[0] / s[0] for h, s in zip(hits, statics, strict=True))
            print(f"medians of {args.rounds} rounds: static {static_rps:.0f} req/s, "
                  f"hits {hit_rps:.0f} req/s, hit p99 {hit_p99:.1f} ms, ratio {ratio:.2f}",
                  flush=True)

            rss_before, rss_after = (padded_memory(base, processes[0].pid, args.padded,
                                                   args.clients)
                                     if args.padded else (math.nan, math.nan))
            overhead = placeholder_times(base, args.misses, "0")
            print(f"miss → placeholder with wait=0 (the path's own cost): median "
                  f"{statistics.median(overhead):.1f} ms, max {max(overhead):.1f} ms", flush=True)
            default_wait = placeholder_times(base, 3, None)
            placeholder_ms = statistics.median(default_wait)
            print(f"miss → placeholder with the default IMAGINE_EMBED_WAIT "
                  f"({settings.embed_wait:g} s): median {placeholder_ms:.0f} ms", flush=True)
            print(f"hit_rps={hit_rps:.0f} hit_p99_ms={hit_p99:.1f} "
                  f"baseline_ratio={ratio:.2f} placeholder_ms={placeholder_ms:.0f} "
                  f"rss_before_mib={rss_before:.1f} rss_after_mib={rss_after:.1f}")
        finally:
            stop_processes(processes)
            redis_server.stop()


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate every process, then wait for each (10 s) and kill what is left."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
