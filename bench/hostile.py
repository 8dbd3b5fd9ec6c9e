"""The hostile-client figures of docs/hardening.md, against a running `gatekey serve`:

    python -m bench.hostile bodies --url URL --pid SUPERVISOR_PID
    python -m bench.hostile flood --url URL --key gk_VALID [--seconds 10]

`bodies`: worker RSS while 4 clients each POST a 128 MiB body to /v1/admin/keys without a key.
`flood`: valid-key latency and 503s while wrk sends well-formed forged keys as fast as it can,
each from an address of its own (X-Forwarded-For: the server must trust loopback as a proxy),
or with `--one-address` all from loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil

from bench.wrk import SCRIPT as KEYS_SCRIPT
from bench.wrk import WRK_MISSING
from service.keys.format import generate_key

MIB = 1024 * 1024
FORGED_SCRIPT = Path(__file__).with_name("forged.lua")


async def _big_body(size: int) -> AsyncIterator[bytes]:
    chunk = b" " * MIB
    for _ in range(size // MIB):
        yield chunk


async def _post_big(url: str, size: int) -> str:
    headers = {"Content-Length": str(size), "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=120) as client:
        try:
            response = await client.post(
                f"{url}/v1/admin/keys", content=_big_body(size), headers=headers
            )
        except httpx.TransportError as error:
            return f"closed ({type(error).__name__})"
    return str(response.status_code)


def _worker_rss(pid: int) -> list[int]:
    return [child.memory_info().rss for child in psutil.Process(pid).children()]


async def bodies(
    url: str, pid: int, *, clients: int = 4, size: int = 128 * MIB
) -> dict[str, object]:
    """Peak RSS of the largest worker while `clients` bodies of `size` bytes are sent."""
    before = _worker_rss(pid)
    peak = max(before)
    started = time.monotonic()
    posts = asyncio.gather(*(_post_big(url, size) for _ in range(clients)))
    while not posts.done():
        peak = max(peak, *_worker_rss(pid))
        await asyncio.sleep(0.02)
    return {
        "answers": dict(Counter(await posts)),
        "seconds": round(time.monotonic() - started, 2),
        "worker_rss_before_mib": round(max(before) / MIB),
        "worker_rss_peak_mib": round(peak / MIB),
    }


async def _valid_loop(url: str, key: str, stop: asyncio.Event) -> list[tuple[int, float]]:
    """Sequential valid-key requests from an address of their own, until `stop`."""
    samples = []
    headers = {"X-API-Key": key, "X-Forwarded-For": "192.0.2.1"}
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            started = time.monotonic()
            response = await client.get("/v1/whoami", headers=headers)
            samples.append((response.status_code, time.monotonic() - started))
    return samples


async def flood(
    url: str, key: str, *, seconds: int, connections: int, one_address: bool
) -> dict[str, object]:
    """`one_address`: every forged key from loopback itself (wrk's own address), else each from
    an X-Forwarded-For address of its own."""
    with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False) as keys:
        keys.write("\n".join(generate_key("gk") for _ in range(100_000)))
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
        "--script", str(KEYS_SCRIPT if one_address else FORGED_SCRIPT), f"{url}/v1/auth",
        "--", keys.name, "0", "1",
    ]  # fmt: skip
    try:
        wrk = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    except FileNotFoundError:
        raise SystemExit(WRK_MISSING) from None
    stop = asyncio.Event()
    valid = asyncio.create_task(_valid_loop(url, key, stop))
    output, _ = await wrk.communicate()
    stop.set()
    samples = await valid
    os.unlink(keys.name)
    line = next(x for x in output.decode().splitlines() if x.startswith("BENCH_JSON "))
    forged = json.loads(line.removeprefix("BENCH_JSON "))
    latencies = sorted(elapsed for _, elapsed in samples)
    return {
        "forged_per_s": round(forged["requests"] / (forged["duration_us"] / 1e6)),
        "forged_non_2xx": forged["non_2xx"],
        "valid_requests": len(samples),
        "valid_statuses": dict(Counter(status for status, _ in samples)),
        "valid_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "valid_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        "valid_503": sum(1 for status, _ in samples if status == 503),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["bodies", "flood"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, help="the serve supervisor (bodies)")
    parser.add_argument("--key", help="a valid key (flood)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--one-address", action="store_true", help="flood from loopback only")
    args = parser.parse_args()
    if args.what == "bodies":
        result = asyncio.run(bodies(args.url, args.pid))
    else:
        result = asyncio.run(
            flood(
                args.url,
                args.key,
                seconds=args.seconds,
                connections=args.connections,
                one_address=args.one_address,
            )
        )
    print(json.dumps(result))  # noqa: T201  # the figures are the script's output


if __name__ == "__main__":
    main()
