"""Tenants and keys (README, "Tenants and keys"): API keys, each job its tenant's, limits per
key, admin keys, signed result links. Against a real Redis, a real worker and, for what must
hold across fronts, several real front processes on one Redis."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from redis import Redis
from starlette.testclient import TestClient

from renderq.api_keys import KeyLimits, create_key, parse_key
from renderq.client import Client, Retry, TooManyRequests
from renderq.keys import Keys
from renderq.settings import Settings, SettingsError
from service.app import create_app
from service.result_links import LinkSigner
from tests.conftest import environ_for, run_to_end
from tests.images import decode
from tests.processes import INSTALLED_PYTHON, Processes, wait_until
from worker.loop import Worker

SIGNING_KEY = "test-signing-key-one"
ADMIN_TOKEN = "tenants-admin-token"
TEXT = {"text": "tenant"}


def keyed_settings(redis_url: str, **overrides: str) -> Settings:
    env = {
        "RENDERQ_AUTH": "required",
        "RENDERQ_SIGNING_KEY": SIGNING_KEY,
        "RENDERQ_ADMIN_TOKEN": ADMIN_TOKEN,
        **overrides,
    }
    return Settings.from_env(environ_for(redis_url, **env))


@pytest.fixture
def keyed(redis_url: str) -> Iterator[TestClient]:
    """A front that requires keys (in process: its lifespan runs, as any test client's)."""
    with TestClient(create_app(keyed_settings(redis_url))) as test_client:
        yield test_client


def new_key(redis: Redis, name: str, limits: KeyLimits | None = None) -> dict[str, str]:
    """A new key for tenant `name`, as the headers that carry it."""
    text = create_key(redis, Keys(), name, limits or KeyLimits())
    assert text is not None
    return {"Authorization": f"Bearer {text}"}


def submit(client: TestClient, headers: dict[str, str], **extra: str) -> str:
    response = client.post("/jobs", json=TEXT, headers={**headers, **extra})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_without_a_key_nothing_but_health_and_the_api_description(
    keyed: TestClient, redis: Redis
) -> None:
    # No key exists yet: everything is refused, as the start-up log warns.
    assert_unauthorized(keyed.post("/jobs", json=TEXT))
    for path in ("/fonts", "/jobs/AAAAAAAAAAAAAAAAAAAAAA", "/jobs/AAAAAAAAAAAAAAAAAAAAAA/status"):
        assert_unauthorized(keyed.get(path))
    # Other methods, and paths beside the dashboard's open ones, are closed as well.
    head = keyed.head("/fonts")
    assert head.status_code == 401 and head.headers["www-authenticate"].startswith("Bearer")
    for method, path in (("OPTIONS", "/jobs"), ("GET", "/dashboard/other")):
        assert_unauthorized(keyed.request(method, path))
    assert keyed.get("/healthz").status_code == 200
    spec = keyed.get("/openapi.json").json()
    assert spec["security"] == [{"apiKey": []}]
    assert not redis.keys(Keys().job("*"))


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "bearer rq_acme_" + "0" * 64,  # the right shape, the wrong secret
        "Bearer rq_nobody_" + "a" * 64,  # no such tenant
        "Bearer rq_acme_" + "a" * 63,
        "Bearer rq_ACME_" + "a" * 64,
        "Bearer rq_acme_" + "a" * 64 + "\u00e9",
        "Bearer " + "x" * 8000,
        "Bearer rq_acme_\x00" + "a" * 64,
        "Bearer rq_../../etc_" + "a" * 64,
    ],
)
def test_bad_or_hostile_authorization_is_401_never_500(
    keyed: TestClient, redis: Redis, authorization: str
) -> None:
    new_key(redis, "acme")
    raw = authorization.encode("latin-1")
    response = keyed.post("/jobs", json=TEXT, headers=[(b"authorization", raw)])
    assert_unauthorized(response)


def test_a_tenant_never_sees_another_tenants_job(keyed: TestClient, redis: Redis) -> None:
    alice, bob = new_key(redis, "alice"), new_key(redis, "bob")
    job_id = submit(keyed, alice)
    assert redis.hget(Keys().job(job_id), "tenant") == b"alice"
    for response in (
        keyed.get(f"/jobs/{job_id}", headers=bob),
        keyed.get(f"/jobs/{job_id}?wait=5", headers=bob),  # refused before any waiting
        keyed.get(f"/jobs/{job_id}/status", headers=bob),
        keyed.delete(f"/jobs/{job_id}", headers=bob),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"
    # Exactly what an id that never existed answers: nothing tells the two apart.
    unknown = keyed.get("/jobs/AAAAAAAAAAAAAAAAAAAAAA/status", headers=bob)
    assert unknown.json() == keyed.get(f"/jobs/{job_id}/status", headers=bob).json()
    assert keyed.get(f"/jobs/{job_id}/status", headers=alice).json()["status"] == "queued"
    assert keyed.delete(f"/jobs/{job_id}", headers=alice).json()["status"] == "cancelled"


def test_idempotency_keys_are_scoped_to_their_tenant(keyed: TestClient, redis: Redis) -> None:
    alice, bob = new_key(redis, "alice"), new_key(redis, "bob")
    first = submit(keyed, alice, **{"Idempotency-Key": "order-1"})
    # Bob cannot claim Alice's key first, nor learn her job through it.
    bobs = submit(keyed, bob, **{"Idempotency-Key": "order-1"})
    assert bobs != first
    assert submit(keyed, alice, **{"Idempotency-Key": "order-1"}) == first
    assert submit(keyed, bob, **{"Idempotency-Key": "order-1"}) == bobs


def test_the_rate_is_enforced_with_its_headers(keyed: TestClient, redis: Redis) -> None:
    # A token every 1000 s: nothing refills while the test runs.
    limited = new_key(redis, "limited", KeyLimits(rate=0.001, burst=2))
    first = keyed.post("/jobs", json=TEXT, headers=limited)
    assert first.status_code == 202
    assert first.headers["ratelimit-policy"] == '"submit";q=2;w=2000'
    assert first.headers["ratelimit"].startswith('"submit";r=1;t=')
    assert (
        keyed.post("/jobs", json=TEXT, headers=limited)
        .headers["ratelimit"]
        .startswith('"submit";r=0;')
    )
    refused = keyed.post("/jobs", json=TEXT, headers=limited)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 900 <= int(refused.headers["retry-after"]) <= 1000
    assert refused.headers["ratelimit"].startswith('"submit";r=0;t=')
    assert refused.headers["ratelimit-policy"] == '"submit";q=2;w=2000'
    # Another tenant has its own bucket; a key with no rate sends no headers.
    unlimited = new_key(redis, "unlimited")
    other = keyed.post("/jobs", json=TEXT, headers=unlimited)
    assert other.status_code == 202 and "ratelimit" not in other.headers


def test_extreme_limits_still_make_a_bucket_redis_accepts(keyed: TestClient, redis: Redis) -> None:
    """A bucket that would take ages to fill (a huge burst, a tiny rate) lives a week at
    most: a TTL beyond what Redis takes made every submission of such a key a 500."""
    for name, limits in (
        ("huge-burst", KeyLimits(rate=1, burst=10**19)),
        ("tiny-rate", KeyLimits(rate=1e-20, burst=1)),
    ):
        response = keyed.post("/jobs", json=TEXT, headers=new_key(redis, name, limits))
        assert response.status_code == 202, response.text
        assert 0 < redis.pttl(Keys().rate_bucket(name)) <= 7 * 86400 * 1000


def test_a_tenants_cap_of_waiting_jobs(keyed: TestClient, redis: Redis) -> None:
    capped, other = new_key(redis, "capped", KeyLimits(max_queued=2)), new_key(redis, "other")
    for _ in range(2):
        submit(keyed, capped)
    refused = keyed.post("/jobs", json=TEXT, headers=capped)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "tenant_queue_full"
    assert refused.headers["retry-after"] == "1"
    submit(keyed, other)  # the cap is the tenant's own


def test_operator_routes_take_an_admin_key_or_the_tokens(keyed: TestClient, redis: Redis) -> None:
    tenant, admin = new_key(redis, "tenant"), new_key(redis, "ops", KeyLimits(admin=True))
    for path in ("/metrics", "/dashboard/state"):
        assert_unauthorized(keyed.get(path))
        refused = keyed.get(path, headers=tenant)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert keyed.get(path, headers=admin).status_code == 200
    token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert keyed.get("/dashboard/state", headers=token).status_code == 200
    assert keyed.get("/dashboard/state", headers=admin).json()["read_only"] is False
    # A requeue with an admin key reaches the dead letters (this entry does not exist).
    requeue = keyed.post("/dashboard/dead-letters/1-0/requeue", headers=admin)
    assert requeue.json()["error"]["code"] == "dead_letter_not_found"
    assert keyed.post("/dashboard/dead-letters/1-0/requeue", headers=tenant).status_code == 403
    # The dashboard's page holds no data: a browser opens it, then gives it the key.
    assert keyed.get("/dashboard").status_code == 200


def done_job(client: TestClient, headers: dict[str, str], worker: Callable[[], object]) -> str:
    job_id = submit(client, headers)
    worker()
    return job_id


@pytest.fixture
def run_keyed_worker(redis_url: str, redis: Redis) -> Callable[[], Worker]:
    def run() -> Worker:
        worker = Worker(keyed_settings(redis_url), redis, consumer="tenant-worker")
        worker.run(burst=True)
        return worker

    return run


ARABIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")  # int() reads them as digits


def link_parts(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path, int(query["expires"][0]), query["sig"][0]


def test_a_signed_link_opens_the_result_without_a_key(
    keyed: TestClient,
    redis: Redis,
    run_keyed_worker: Callable[[], Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = new_key(redis, "alice")
    job_id = done_job(keyed, alice, run_keyed_worker)
    before = time.time()
    status = keyed.get(f"/jobs/{job_id}/status?link_ttl=600", headers=alice).json()
    path, expires, sig = link_parts(status["result_url"])
    assert path == f"/results/{job_id}"
    assert before + 600 - 1 <= expires <= time.time() + 600
    with caplog.at_level(logging.INFO):
        opened = keyed.get(status["result_url"])  # no Authorization at all
    # The access log names the job by its tag: with auth off its id alone grants the result.
    ours = [record for record in caplog.records if record.name.startswith("renderq")]
    assert ours, "the request was logged"
    assert not [r for r in ours if job_id in json.dumps(getattr(r, "fields", {})) + r.getMessage()]
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "image/png"
    assert decode(opened.content).size[0] > 0
    assert opened.content == keyed.get(f"/jobs/{job_id}", headers=alice).content
    altered = [
        f"{path}?expires={expires + 1}&sig={sig}",
        f"{path}?expires={expires}&sig={sig[:-1]}{'0' if sig[-1] != '0' else '1'}",
        f"/results/{'B' * 22}?expires={expires}&sig={sig}",
        f"{path}?expires={expires}",
        f"{path}?sig={sig}",
        f"{path}?expires=-{expires}&sig={sig}",
        f"{path}?expires={expires}&sig={sig.upper()}x",
        # The same expiry and signature, written otherwise: accepted only as signed.
        f"{path}?expires=0{expires}&sig={sig}",
        f"{path}?expires=%2B{expires}&sig={sig}",
        f"{path}?expires={str(expires).translate(ARABIC_DIGITS)}&sig={sig}",
        f"{path}?expires={expires}&sig={sig.upper()}",
        f"{path}?expires={expires}&sig={'é' * 64}",  # not hex, not even ASCII: never a 500
        f"{path}?expires={'9' * 40}&sig={sig}",
    ]
    for url in altered:
        response = keyed.get(url)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "invalid_signature"


def test_a_link_lasts_no_longer_than_asked_nor_than_its_result(
    redis_url: str, redis: Redis, run_keyed_worker: Callable[[], Worker]
) -> None:
    short_lived = keyed_settings(redis_url, RENDERQ_RESULT_TTL="120")
    with TestClient(create_app(short_lived)) as client:
        alice = new_key(redis, "alice")
        job_id = done_job(client, alice, run_keyed_worker)
        status = client.get(f"/jobs/{job_id}/status", headers=alice).json()
        _, expires, _ = link_parts(status["result_url"])
        assert expires <= time.time() + 120  # RENDERQ_RESULT_LINK_TTL is 3600
        bad = client.get(f"/jobs/{job_id}/status?link_ttl=99999", headers=alice)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "link_ttl"


def test_expired_and_rotated_links(
    keyed: TestClient, redis_url: str, redis: Redis, run_keyed_worker: Callable[[], Worker]
) -> None:
    alice = new_key(redis, "alice")
    job_id = done_job(keyed, alice, run_keyed_worker)
    old = LinkSigner.of(keyed_settings(redis_url))
    expired = keyed.get(old.url(job_id, int(time.time()) - 1))
    assert expired.status_code == 403
    assert expired.json()["error"]["code"] == "link_expired"
    link = old.url(job_id, int(time.time()) + 600)
    # During a rotation the new key signs and the old one is still accepted...
    rotating = keyed_settings(redis_url, RENDERQ_SIGNING_KEY=f"key-two,{SIGNING_KEY}")
    with TestClient(create_app(rotating)) as front:
        assert front.get(link).status_code == 200
        fresh = front.get(f"/jobs/{job_id}/status", headers=alice).json()["result_url"]
        assert keyed.get(fresh).status_code == 403  # the old front knows only the old key
    # ...and once the old key is dropped, its links stop working.
    rotated = keyed_settings(redis_url, RENDERQ_SIGNING_KEY="key-two")
    with TestClient(create_app(rotated)) as front:
        assert front.get(link).status_code == 403
        assert front.get(fresh).status_code == 200


def test_auth_off_is_one_implicit_tenant_with_links(
    redis_url: str, run_worker: Callable[[], Worker], redis: Redis
) -> None:
    settings = Settings.from_env(environ_for(redis_url, RENDERQ_SIGNING_KEY=SIGNING_KEY))
    with TestClient(create_app(settings)) as client:
        job_id = submit(client, {})
        assert redis.hget(Keys().job(job_id), "tenant") == b"default"
        run_worker()
        url = client.get(f"/jobs/{job_id}/status").json()["result_url"]
        assert client.get(url).status_code == 200
        # An Idempotency-Key of the implicit tenant is stored under its bare name, as before.
        again = submit(client, {"Idempotency-Key": "k"})
        assert redis.exists(Keys().idempotency("k")) and again
    with pytest.raises(SettingsError, match="RENDERQ_AUTH"):
        Settings.from_env(environ_for(redis_url, RENDERQ_AUTH="maybe"))


def keys_command(redis_url: str, *args: str) -> tuple[int, str, str]:
    ran = run_to_end([INSTALLED_PYTHON, "-m", "service.keys", *args], redis_url)
    return ran.returncode, ran.stdout.decode(), ran.stderr.decode()


def test_the_key_command(redis_url: str, redis: Redis) -> None:
    code, out, _ = keys_command(redis_url, "create", "acme", "--rate", "5", "--max-queued", "50")
    assert code == 0
    key = out.strip()
    assert parse_key(key) == ("acme", key.rpartition("_")[2])
    stored = redis.hget(Keys().api_keys, "acme")
    assert stored is not None and key.rpartition("_")[2].encode() not in stored
    assert keys_command(redis_url, "create", "acme")[0] == 1
    code, out, _ = keys_command(redis_url, "update", "acme", "--burst", "9", "--admin")
    assert code == 0 and '"burst": 9' in out and '"admin": true' in out
    code, out, _ = keys_command(redis_url, "list")
    assert '"name": "acme"' in out and '"rate": 5.0' in out and '"max_queued": 50' in out
    assert key not in out
    assert keys_command(redis_url, "revoke", "acme")[0] == 0
    assert keys_command(redis_url, "revoke", "acme")[0] == 1
    assert keys_command(redis_url, "create", "Bad Name")[0] == 2
    # The implicit tenant's jobs (queued with auth off) belong to no key.
    assert keys_command(redis_url, "create", "default")[0] == 2
    assert keys_command(redis_url, "create", "acme", "--rate", "-1")[0] == 2


def test_limits_and_revocation_hold_across_fronts(processes: Processes, redis: Redis) -> None:
    """Two fronts on one Redis: one bucket per tenant, and a revoked key stops working on
    both (each remembers a key for a second at most)."""
    env = {"RENDERQ_AUTH": "required", "RENDERQ_SIGNING_KEY": SIGNING_KEY}
    fronts = [processes.start_front(**env), processes.start_front(**env)]
    # No key exists yet: the start-up log says every request is refused, and what to run.
    (warning,) = processes.started[0].events("auth_required_no_keys")
    assert "python -m service.keys create" in warning["how"]
    limited = new_key(redis, "limited", KeyLimits(rate=0.001, burst=3))
    with httpx.Client() as http:
        answers = [
            http.post(f"{fronts[n % 2]}/jobs", json=TEXT, headers=limited).status_code
            for n in range(4)
        ]
        assert answers == [202, 202, 202, 429]
    # The Python client sends its key, and reports the refusal once its retries ran out (the
    # next token is 1000 s away: beyond any retry's patience).
    key = limited["Authorization"].removeprefix("Bearer ")
    with Client(fronts[1], api_key=key, retry=Retry(within=5)) as client:
        with pytest.raises(TooManyRequests) as refused:
            client.submit_text("one more")
        assert refused.value.code == "rate_limited"
    with httpx.Client() as http:
        revoked = new_key(redis, "revoked")
        for base in fronts:
            assert http.get(f"{base}/fonts", headers=revoked).status_code == 200
        redis.hdel(Keys().api_keys, "revoked")  # what `service.keys revoke` does
        revoked_at = time.monotonic()

        def refused_everywhere() -> bool:
            codes = {http.get(f"{base}/fonts", headers=revoked).status_code for base in fronts}
            return codes == {401}

        wait_until(refused_everywhere, 10, "the revoked key to be refused by every front")
        # Within the second a front remembers a key (and a request's round trip).
        assert time.monotonic() - revoked_at < 1.5
