"""`python -m bench.faults`: how long renderq takes to notice and to get over each fault.

Not part of the test suite; about a minute. A private cluster (Redis with AOF, the front and
2 workers, default settings), then, each --rounds times:

  freeze     Redis gets SIGSTOP. Timed: each POST /jobs until the breaker opens (the
             deadline: 2 s), one more with the breaker open, GET /healthz. After 5 s, SIGCONT;
             timed: from SIGCONT until a POST gets its 202 again.
  kill       A slow image job (an ImageMagick blur of about a second and a half) is rendered
             once undisturbed, for its render time; then again, and its worker gets SIGKILL
             mid-render. Timed: from the kill until the job is done, less one render time
             ("the rest": waiting for the lease, the claim, the restart), when another worker
             takes it over after the lease expires ("other worker") and when the killed worker
             is restarted under its own name, as supervisord does ("same name").

Prints one line per measure: the median and the worst of the rounds, in seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
from PIL import Image
from redis import Redis

from bench.chaos import ChaosCluster
from bench.cluster import new_log_dir, running
from bench.report import say
from renderq.keys import Keys
from tests.processes import wait_until

FREEZE_SECONDS = 5.0
KEYS = Keys()
SLOW_OPS = json.dumps([{"op": "blur", "radius": 20}])


def slow_upload() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((1400, 1400), 40).convert("RGB").save(out, "PNG", compress_level=1)
    return out.getvalue()


def timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def post_text(base: str) -> int:
    try:
        return httpx.post(f"{base}/jobs", json={"text": "fault"}, timeout=30).status_code
    except httpx.HTTPError:
        return 0


def measure_freeze(cluster: ChaosCluster, into: dict[str, list[float]]) -> None:
    base, redis = cluster.base_url, cluster.servers[0]
    redis.process.send_signal(signal.SIGSTOP)
    try:
        for n in range(3):  # the breaker opens after RENDERQ_BREAKER_FAILURES (3) failures
            into[f"freeze: POST {n + 1} answers 503"].append(timed(lambda: post_text(base)))
        into["freeze: POST, breaker open"].append(timed(lambda: post_text(base)))
        health = f"{base}/healthz"
        into["freeze: GET /healthz"].append(timed(lambda: httpx.get(health, timeout=30)))
        time.sleep(FREEZE_SECONDS)
    finally:
        redis.process.send_signal(signal.SIGCONT)
    thawed = time.monotonic()
    while post_text(base) != 202:
        time.sleep(0.02)
    into["thaw: SIGCONT to a 202"].append(time.monotonic() - thawed)


def post_slow_job(base: str, upload: bytes) -> str:
    files = {"file": ("slow.png", upload, "image/png")}
    data = {"ops": SLOW_OPS, "engine": "imagemagick"}
    response = httpx.post(f"{base}/jobs", files=files, data=data, timeout=30)
    return str(response.json()["id"])


def job_fields(redis: Redis, job_id: str) -> dict[str, str]:
    raw: Any = redis.hgetall(KEYS.job(job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def wait_done(base: str, job_id: str) -> None:
    answer = httpx.get(f"{base}/jobs/{job_id}?wait=30", timeout=40)
    if answer.status_code != 200:
        raise RuntimeError(f"job {job_id} ended with {answer.status_code}: {answer.text}")


def measure_kill(
    cluster: ChaosCluster, upload: bytes, same_name: bool, into: dict[str, list[float]]
) -> None:
    base = cluster.base_url
    with Redis.from_url(cluster.redis_url) as redis:
        job_id = post_slow_job(base, upload)
        wait_done(base, job_id)
        fields = job_fields(redis, job_id)
        render = float(fields["finished_at"]) - float(fields["started_at"])
        into["kill: render time, undisturbed"].append(render)
        job_id = post_slow_job(base, upload)
        wait_until(lambda: job_fields(redis, job_id).get("status") == "running", 30, "a start")
        owner = job_fields(redis, job_id)["delivery"].split(" ")[0]
        victim = next(w for w in cluster.workers if w.name == owner and w.process.poll() is None)
        killed = time.monotonic()
        victim.process.kill()
        victim.process.wait()
        cluster.start_worker(victim.name if same_name else None)
        wait_done(base, job_id)
        done = time.monotonic() - killed
    how = "same name" if same_name else "other worker"
    into[f"kill ({how}): kill to done"].append(done)
    into[f"kill ({how}): the rest, less one render"].append(done - render)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    found: dict[str, list[float]] = defaultdict(list)
    upload = slow_upload()
    with running(ChaosCluster(new_log_dir())) as cluster:
        cluster.start_workers(2)
        for n in range(args.rounds):
            say("faults", f"round {n + 1} of {args.rounds}")
            measure_freeze(cluster, found)
            measure_kill(cluster, upload, same_name=False, into=found)
            measure_kill(cluster, upload, same_name=True, into=found)
    width = max(len(name) for name in found)
    print(f"{'measure':<{width}}  median s  worst s")
    for name, seconds in found.items():
        print(f"{name:<{width}}  {statistics.median(seconds):8.2f}  {max(seconds):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
