"""Property-based fuzz of both transports against the real service (hypothesis, bounded):
whatever arrives, no 5xx other than a deliberate 503, every error names its kind (and its field
when the input is wrong), and afterwards the server is alive and a known-good request gets a
bit-identical result."""

from __future__ import annotations

import json
import math
import os

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.proto import stubs

pb2, pb2_grpc = stubs()
KNOWN_GOOD = {"items": [{"question": "Who wrote Hamlet?",
                         "passages": ["Hamlet: Hamlet is a tragedy written by William Shakespeare."],
                         "response": "Hamlet was written by William Shakespeare. He also liked cheese."}]}
ALLOWED = {200, 400, 401, 403, 404, 408, 413, 415, 503}
# examples per test; FGRM_TEST_FUZZ_EXAMPLES scales a longer run (RELIABILITY.md: 4,000 each)
EXAMPLES = int(os.environ.get("FGRM_TEST_FUZZ_EXAMPLES", "600"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

text = st.text(max_size=120)
number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70))
json_value = st.recursive(st.none() | st.booleans() | number | text,
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                          max_leaves=20)
offsets = st.lists(st.lists(st.integers(-5, 300), min_size=0, max_size=3), max_size=6)
item = st.fixed_dictionaries({"response": text}, optional={
    "question": text, "passages": st.lists(text, max_size=3), "token_offsets": offsets | st.none(),
    "extra": json_value})
score_body = st.fixed_dictionaries({"items": st.lists(item, max_size=3)}, optional={
    "weights": st.dictionaries(st.sampled_from(["relevance", "factuality", "completeness", "x"]), number, max_size=3),
    "profile": st.none() | text})
segment = st.fixed_dictionaries({"end": st.integers(-10, 2**40), "reward": number})
mix_body = st.fixed_dictionaries({"items": st.lists(st.fixed_dictionaries({"types": st.dictionaries(
    st.sampled_from(["relevance", "factuality", "completeness", "zz"]),
    st.fixed_dictionaries({"granularity": st.sampled_from(["sentence", "sub-sentence", "response", "word"]),
                           "segments": st.lists(segment, max_size=3)}), max_size=3)},
    optional={"token_offsets": offsets}), max_size=3)}, optional={"weights": st.dictionaries(text, number, max_size=2)})
openrlhf_body = st.fixed_dictionaries({"query": st.lists(text, max_size=3)},
                                      optional={"prompts": st.lists(text, max_size=3), "labels": json_value})
http_request = st.one_of(
    st.tuples(st.sampled_from(["/v1/score", "/v1/mix", "/v1/openrlhf"]), json_value),
    st.tuples(st.just("/v1/score"), score_body),
    st.tuples(st.just("/v1/mix"), mix_body),
    st.tuples(st.just("/v1/openrlhf"), openrlhf_body),
)


@pytest.fixture(scope="module")
def known_good(http):
    r = http.post("/v1/score", json=KNOWN_GOOD)
    assert r.status_code == 200
    return r.json()


def _check_http(r: httpx.Response) -> None:
    assert r.status_code in ALLOWED, (r.status_code, r.text[:500])
    if r.status_code != 200:
        err = r.json()["error"]
        assert err["kind"] and err["message"], err
        if err["kind"] == "invalid_input":
            assert err["field"], err


@FUZZ
@given(request=http_request)
def test_http_fuzz(http, known_good, request):
    path, body = request
    raw = json.dumps(body, allow_nan=True).encode()  # NaN / Infinity tokens too: JSON has none
    _check_http(http.post(path, content=raw, headers={"content-type": "application/json"}))


@FUZZ
@given(payload=st.binary(max_size=200), method=st.sampled_from(["Score", "Mix"]))
def test_grpc_fuzz_raw_bytes(channel, known_good, payload, method):
    call = channel.unary_unary(f"/fgrm.v1.RewardService/{method}", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    try:
        call(payload, timeout=60)
    except grpc.RpcError as err:
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), err.details()
        assert "class" not in (err.details() or "")


@FUZZ
@given(responses=st.lists(text, max_size=3), weight=number, spans=offsets, profile=text)
def test_grpc_fuzz_messages(channel, known_good, responses, weight, spans, profile):
    stub = pb2_grpc.RewardServiceStub(channel)
    items = []
    for r in responses:
        it = pb2.Item(response=r)
        if spans:
            it.token_offsets.SetInParent()
            it.token_offsets.spans.extend(pb2.Span(start=max(-2**31, min(2**31 - 1, s[0])) if s else 0,
                                                   end=max(-2**31, min(2**31 - 1, s[-1])) if s else 0)
                                          for s in spans)
        items.append(it)
    w = float(weight) if not isinstance(weight, float) or not math.isnan(weight) else weight
    try:
        stub.Score(pb2.ScoreRequest(items=items, weights={"relevance": w}, profile=profile), timeout=60)
    except grpc.RpcError as err:
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), err.details()
        md = dict(err.trailing_metadata() or ())
        assert md.get("fgrm-error-kind"), md


def test_after_the_fuzz_the_server_is_alive_and_answers_bit_identically(http, known_good):
    r = http.post("/v1/score", json=KNOWN_GOOD)
    assert r.status_code == 200 and r.json() == known_good
