"""`/openapi.json` is exact: built from the same field declarations the server applies, so a
client that follows it is never surprised, and schemathesis finds nothing to report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from renderq.image_request import IMAGE_FIELDS
from renderq.operations import OPERATIONS
from renderq.settings import Settings
from renderq.text_request import TEXT_FIELDS
from service.app import create_app
from tests.conftest import environ_for
from tests.processes import Processes

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_nothing(processes: Processes, tmp_path: Path) -> None:
    """Every check but positive_data_acceptance, which counts a reused Idempotency-Key's
    rightful 422 (and text that is valid JSON but unsafe to draw) as an error."""
    base = processes.start_front()
    processes.start("worker")
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "40",
            "--seed",
            "20261202",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # its cache of crashes, not in the checkout
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:]
    assert " passed" in run.stdout


def test_every_declared_field_is_in_the_document(client: TestClient, settings: Settings) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/jobs"]["post"]
    text_schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert set(text_schema["properties"]) == {field.name for field in TEXT_FIELDS}
    assert text_schema["properties"]["size"]["maximum"] == settings.max_font_size
    query = {parameter["name"] for parameter in post["parameters"] if parameter["in"] == "query"}
    assert query == {field.name for field in IMAGE_FIELDS}
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    ops = form["ops"]["contentSchema"]["items"]["oneOf"]
    assert [op["properties"]["op"]["const"] for op in ops] == list(OPERATIONS)


def test_the_document_follows_the_running_limits(redis_url: str) -> None:
    settings = Settings.from_env(environ_for(redis_url, RENDERQ_MAX_TEXT_LENGTH="77"))
    with TestClient(create_app(settings)) as client:
        spec = client.get("/openapi.json").json()
    text = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert text["schema"]["properties"]["text"]["maxLength"] == 77


def test_a_text_job_takes_no_query_parameter(client: TestClient) -> None:
    response = client.post("/jobs?quality=101", json={"text": "x"})
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "unknown_field",
        "message": response.json()["error"]["message"],
        "field": "quality",
    }


def test_allow_lists_every_method_of_a_job(client: TestClient) -> None:
    response = client.put("/jobs/AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "DELETE"}
