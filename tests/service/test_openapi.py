"""The OpenAPI document tells the truth: every route, the version, the error body as sent, 413/415/503,
nullability as accepted; and schemathesis, run against it on a private service, finds nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema_rs
import pytest

from tests.conftest import start_service

ROUTES = {("/v1/score", "post"), ("/v1/mix", "post"), ("/v1/openrlhf", "post"), ("/v1/feedback-types", "get"),
          ("/v1/profiles", "get"), ("/v1/profiles/{name}", "put")}


@pytest.fixture(scope="module")
def own_service(tmp_path_factory):
    """A private service: schemathesis PUTs random profiles, which must not reach other tests."""
    with start_service(tmp_path_factory.mktemp("openapi"), max_body_bytes="200000") as handle:
        yield handle


@pytest.fixture(scope="module")
def doc(own_service):
    r = httpx.get(own_service.base_url + "/docs.json", timeout=30)
    assert r.status_code == 200
    return r.json()


def _error_schema(doc):
    return {**doc["components"]["schemas"]["ErrorBody"], "components": doc["components"]}


def test_every_route_is_documented_with_the_version_and_required_bodies(doc):
    from service.openapi import package_version

    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert ROUTES <= documented
    assert doc["info"]["version"] == package_version() != "None"
    for path, method in ROUTES:
        op = doc["paths"][path][method]
        if "requestBody" in op:
            assert op["requestBody"]["required"] is True, path
        if method == "post":
            for code in ("400", "413", "415", "500", "503"):
                assert op["responses"][code]["content"]["application/json"]["schema"] == \
                    {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
            assert "Retry-After" in op["responses"]["503"]["headers"]


def test_the_error_bodies_the_service_sends_match_the_documented_schema(own_service, doc):
    schema = _error_schema(doc)
    with httpx.Client(base_url=own_service.base_url, timeout=30) as http:
        bad = http.post("/v1/score", json={"items": [{"response": 3}]})
        huge = http.post("/v1/score", content=b'{"items": [' + b" " * 300_000 + b"]}",
                         headers={"content-type": "application/json"})
        form = http.post("/v1/score", content=b"items=1", headers={"content-type": "multipart/form-data"})
        weights = http.post("/v1/score", json={"items": [], "weights": {"relevance": True}})
    assert (bad.status_code, huge.status_code, form.status_code, weights.status_code) == (400, 413, 415, 400)
    for r in (bad, huge, form, weights):
        jsonschema_rs.validate(schema, r.json())
    assert huge.json()["error"]["kind"] == "payload_too_large" and "max_body_bytes" in huge.json()["error"]["message"]
    assert form.json()["error"]["kind"] == "unsupported_media_type"
    assert weights.json()["error"]["field"].startswith("weights")


def test_nulls_are_accepted_where_the_document_says_so(own_service, doc):
    props = doc["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"type": "null"} in props["profile"]["anyOf"] and {"type": "null"} in props["weights"]["anyOf"]
    r = httpx.post(own_service.base_url + "/v1/score", json={"items": [{"response": "Hi.", "token_offsets": None}],
                                                             "weights": None, "profile": None}, timeout=30)
    assert r.status_code == 200, r.text


def test_schemathesis_finds_no_failure(own_service, tmp_path):
    """Bounded: 25 examples per operation, a fixed seed. `positive_data_acceptance` is left out
    because the engine also enforces cross-field rules that JSON Schema cannot state (token
    offsets inside the response, one prompt per query, profile names that exist); every other
    check runs, including server errors, response schemas and rejection of schema-violating data."""
    st = Path(sys.executable).with_name("st")
    cmd = [str(st), "run", own_service.base_url + "/docs.json", "--url", own_service.base_url,
           "--max-examples", "25", "--seed", "1", "--exclude-checks", "positive_data_acceptance",
           "--request-timeout", "60"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"},
                         cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout and "failure" not in run.stdout.lower().split("summary")[-1], run.stdout[-3000:]
