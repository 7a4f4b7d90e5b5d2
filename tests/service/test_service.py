"""The real service (bentoml serve + gRPC) on the shipped models: parity, invariance, errors, metrics."""

from __future__ import annotations

import concurrent.futures as cf
import json
import re
from pathlib import Path

import grpc
import numpy as np
import pytest

from service.proto import stubs
from tests.conftest import ADMIN_TOKEN, REPO

pb2, pb2_grpc = stubs()
SAMPLES = json.loads((Path(__file__).parent / "data" / "qa_samples.json").read_text())


@pytest.fixture(scope="module")
def rpc(channel):
    return pb2_grpc.RewardServiceStub(channel), channel


def score_http(http, items, **body):
    r = http.post("/v1/score", json={"items": items, **body})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def grpc_item(it):
    msg = pb2.Item(question=it.get("question", ""), passages=it.get("passages", []), response=it["response"])
    if it.get("token_offsets") is not None:
        msg.token_offsets.SetInParent()
        msg.token_offsets.spans.extend(pb2.Span(start=a, end=b) for a, b in it["token_offsets"])
    return msg


def grpc_result_as_dict(r):
    """ItemResult message -> the HTTP JSON shape, for comparisons."""
    types = {}
    for name, t in r.types.items():
        segs = []
        for s in t.segments:
            d = {"start": s.start, "end": s.end, "text": s.text}
            for key in ("p_error", "score", "p_bad"):
                if s.HasField(key):
                    d[key] = getattr(s, key)
            d["reward"] = s.reward
            segs.append(d)
        types[name] = {"granularity": t.granularity, "total": t.total, "segments": segs,
                       **({"reference": t.reference} if t.reference else {})}
    out = {"types": types, "mixed": {"weights": dict(r.mixed.weights), "total": r.mixed.total,
                                      "events": [{"end": e.end, "reward": e.reward} for e in r.mixed.events]}}
    if r.HasField("token_rewards"):
        out["token_rewards"] = list(r.token_rewards.values)
    return out


def numbers(result):
    """All numbers of a result in a fixed order (keys and texts checked separately)."""
    out = []
    for name in sorted(result["types"]):
        t = result["types"][name]
        out.append(t["total"])
        for s in t["segments"]:
            out += [s["reward"], s.get("p_error", 0.0), s.get("score", 0.0), s.get("p_bad", 0.0)]
    out.append(result["mixed"]["total"])
    out += [e["reward"] for e in result["mixed"]["events"]]
    out += result.get("token_rewards", [])
    return np.array(out)


def structure(result):
    return {name: [(s["start"], s["end"], s["text"]) for s in t["segments"]] for name, t in result["types"].items()}


def word_offsets(text):
    return [[m.start(), m.end()] for m in re.finditer(r"\S+", text)]


# ----------------------------------------------------------------------------- happy paths

def _recorded_quality() -> dict[str, dict[str, float]]:
    """The shipped checkpoint's CV figures, read straight from its fgrm.json (not through the
    code under test): the headline figure with its fold std, then the others, then the baselines."""
    meta = json.loads((REPO / "artifacts" / "fgrm-qa-signals" / "fgrm.json").read_text())
    out = {}
    for head in ("relevance", "factuality", "completeness"):
        names = (["pairwise_accuracy", "prefer_earlier_accuracy", "lexical_pairwise_accuracy"] if head == "completeness"
                 else ["auc", "accuracy", "error_f1", "ece", "lexical_auc", "lexical_accuracy", "majority_accuracy",
                       "all_error_f1"])
        q = {}
        for key, suffix in (("cv", ""), ("cv_with_reference", "_with_reference")):
            if suffix and head == "factuality":
                continue
            summary = meta[key]["summary"][head]
            q.update({n + suffix: summary[n]["mean"] for n in names})
            q[f"{names[0]}_std{suffix}"] = summary[names[0]]["std"]
        out[head] = {**q, "cv_folds": 5.0, "cv_records": 400.0}
    return out


def test_score_returns_segments_for_every_configured_type(http):
    types = http.get("/v1/feedback-types").json()["types"]
    names = [t["name"] for t in types]
    assert {"relevance", "factuality", "completeness"} <= set(names)
    assert all(t["runtime"] in ("torch", "onnx", "onnx-int8") and t["provider"] and t["model_version"] for t in types)
    # what each type does with a reference, as the shipped checkpoint decides it
    policy = {t["name"]: (t["reads_reference"], t["reference_min_words"], t["reference_min_context_share"])
              for t in types}
    assert policy == {"relevance": (True, 10, 0.3), "factuality": (False, 0, 0.0), "completeness": (True, 0, 0.3)}
    # how far to trust each type: the CV the shipped checkpoint records, beside its baselines
    quality = {t["name"]: t["quality"] for t in types}
    assert quality == _recorded_quality()
    assert quality["relevance"]["auc"] == pytest.approx(0.723, abs=5e-4) and quality["relevance"]["lexical_auc"] < 0.65
    assert quality["relevance"]["auc_with_reference"] == pytest.approx(0.887, abs=5e-4)
    assert not any(k.endswith("_with_reference") for k in quality["factuality"])  # it reads none
    assert (quality["completeness"]["pairwise_accuracy"], quality["completeness"]["prefer_earlier_accuracy"]) == \
        pytest.approx((0.554, 0.613), abs=5e-4)
    assert {q["cv_folds"] for q in quality.values()} == {5.0} and {q["cv_records"] for q in quality.values()} == {400.0}
    [res] = score_http(http, [SAMPLES[0]])
    assert list(res["types"]) == names
    text = SAMPLES[0]["response"]
    for t in res["types"].values():
        assert t["segments"]
        for s in t["segments"]:
            assert text[s["start"]:s["end"]] == s["text"]
    assert res["types"]["relevance"]["granularity"] == "sub-sentence"
    assert all("p_error" in s for s in res["types"]["factuality"]["segments"])
    assert "score" in res["types"]["completeness"]["segments"][0]
    assert res["mixed"]["total"] == pytest.approx(sum(t["total"] * res["mixed"]["weights"][n]
                                                       for n, t in res["types"].items()))


def test_http_and_grpc_agree(http, rpc):
    stub, _ = rpc
    items = [dict(s, token_offsets=word_offsets(s["response"])) for s in SAMPLES[:4]]
    via_http = score_http(http, items, weights={"relevance": 0.5})
    reply = stub.Score(pb2.ScoreRequest(items=[grpc_item(i) for i in items], weights={"relevance": 0.5}), timeout=120)
    via_grpc = [grpc_result_as_dict(r) for r in reply.results]
    for h, g in zip(via_http, via_grpc):
        assert structure(h) == structure(g)
        assert h["mixed"]["weights"] == g["mixed"]["weights"]
        np.testing.assert_allclose(numbers(g), numbers(h), atol=1e-5)


def test_batch_invariance_alone_batched_and_concurrent(http):
    alone = [score_http(http, [s])[0] for s in SAMPLES]
    batched = score_http(http, SAMPLES)
    with cf.ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda s: score_http(http, [s])[0], SAMPLES[::-1]))[::-1]
    for a, b, c in zip(alone, batched, concurrent):
        assert structure(a) == structure(b) == structure(c)
        np.testing.assert_allclose(numbers(b), numbers(a), atol=1e-5)
        np.testing.assert_allclose(numbers(c), numbers(a), atol=1e-5)


def test_http_and_grpc_requests_share_forward_passes(http, rpc, fgrm_service):
    if not all(t["batch_invariant"] for t in http.get("/v1/feedback-types").json()["types"]):
        pytest.skip("this runtime runs one item per forward pass (not batch-invariant): nothing to share")
    stub, _ = rpc

    def via_http(s):
        return score_http(http, [s])

    def via_grpc(s):
        return stub.Score(pb2.ScoreRequest(items=[grpc_item(s)]), timeout=120)

    with cf.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(fn, s) for s in SAMPLES for fn in (via_http, via_grpc)]
        for f in futures:
            f.result()
    metrics = http.get("/metrics").text
    shared = re.search(r'^fgrm_batches_total\{transports="grpc\+http"\} (\S+)', metrics, re.M)
    assert shared and float(shared.group(1)) >= 1, "no forward pass carried both HTTP and gRPC items"


def test_empty_response_has_no_segments_but_the_lowest_completeness(http, rpc):
    # A blank answer is judged as an answer: no segments for relevance and factuality, but
    # completeness scores it (one empty segment), below any real answer to the same question.
    # It used to get 0 on every type, and a PPO policy learnt to say nothing.
    q, ps = SAMPLES[0]["question"], SAMPLES[0]["passages"]
    blank, word, real = score_http(http, [{"question": q, "passages": ps, "response": "   ", "token_offsets": [[0, 3]]},
                                          {"question": q, "passages": ps, "response": "Yes."},
                                          {"question": q, "passages": ps, "response": SAMPLES[0]["response"]}],
                                   weights={"completeness": 1.0})
    assert blank["types"]["relevance"]["segments"] == [] and blank["types"]["factuality"]["segments"] == []
    [seg] = blank["types"]["completeness"]["segments"]
    assert (seg["start"], seg["end"], seg["text"]) == (0, 0, "")
    assert seg["reward"] < word["types"]["completeness"]["total"] < real["types"]["completeness"]["total"]
    assert blank["mixed"]["total"] == pytest.approx(seg["reward"])
    assert blank["token_rewards"] == [pytest.approx(seg["reward"])]  # on the last (here the only) token
    stub, _ = rpc
    [g] = stub.Score(pb2.ScoreRequest(items=[pb2.Item(question=q, passages=ps, response="")],
                                      weights={"completeness": 1.0}), timeout=30).results
    assert len(g.types["relevance"].segments) == 0 and len(g.types["factuality"].segments) == 0
    assert g.types["completeness"].segments[0].reward == pytest.approx(seg["reward"], abs=1e-5)
    assert not g.HasField("token_rewards")


def test_token_rewards_follow_true_offsets(http):
    text = SAMPLES[1]["response"]
    offsets = word_offsets(text)
    [res] = score_http(http, [dict(SAMPLES[1], token_offsets=offsets)])
    tr = res["token_rewards"]
    assert len(tr) == len(offsets)
    assert sum(tr) == pytest.approx(res["mixed"]["total"])
    w = res["mixed"]["weights"]
    last_rel = res["types"]["relevance"]["segments"][0]
    holder = next(i for i, (a, b) in enumerate(offsets) if a <= last_rel["end"] - 1 < b)
    assert tr[holder] != 0.0 or w["relevance"] == 0.0


def test_mix_reweights_without_rescoring(http, rpc):
    [res] = score_http(http, [SAMPLES[2]])
    weights = {"relevance": 2.0, "factuality": 0.0, "completeness": 1.0}
    [rescored] = score_http(http, [SAMPLES[2]], weights=weights)
    offsets = word_offsets(SAMPLES[2]["response"])
    r = http.post("/v1/mix", json={"items": [{"types": res["types"], "token_offsets": offsets}], "weights": weights})
    assert r.status_code == 200, r.text
    [mixed] = r.json()["results"]
    assert mixed["mixed"]["total"] == pytest.approx(rescored["mixed"]["total"], abs=1e-9)
    assert [e["end"] for e in mixed["mixed"]["events"]] == [e["end"] for e in rescored["mixed"]["events"]]
    assert len(mixed["token_rewards"]) == len(offsets)
    stub, _ = rpc
    item = pb2.MixItem(types={n: pb2.MixComponent(granularity=t["granularity"], segments=[
        pb2.MixSegment(end=s["end"], reward=s["reward"]) for s in t["segments"]]) for n, t in res["types"].items()})
    [g] = stub.Mix(pb2.MixRequest(items=[item], weights=weights), timeout=30).results
    assert g.mixed.total == pytest.approx(mixed["mixed"]["total"])


def test_score_results_post_unchanged_into_mix_on_both_transports(http, rpc):
    """The round trip a trainer does: score once, re-weight later with the results as they came."""
    weights = {"relevance": 0.5, "factuality": 2.0, "completeness": 1.0}
    results = score_http(http, SAMPLES[:2])
    rescored = score_http(http, SAMPLES[:2], weights=weights)
    r = http.post("/v1/mix", json={"items": results, "weights": weights})  # "mixed" etc. ride along
    assert r.status_code == 200, r.text
    for got, want in zip(r.json()["results"], rescored):
        assert got["mixed"]["total"] == pytest.approx(want["mixed"]["total"], abs=1e-9)
        assert [e["end"] for e in got["mixed"]["events"]] == [e["end"] for e in want["mixed"]["events"]]
        assert [e["reward"] for e in got["mixed"]["events"]] == \
            pytest.approx([e["reward"] for e in want["mixed"]["events"]], abs=1e-9)
    stub, _ = rpc
    scored = stub.Score(pb2.ScoreRequest(items=[grpc_item(it) for it in SAMPLES[:2]]), timeout=60).results
    mixed = stub.Mix(pb2.MixRequest(items=[pb2.MixItem(scored=r.types) for r in scored], weights=weights),
                     timeout=30).results
    for got, want in zip(mixed, rescored):
        assert got.mixed.total == pytest.approx(want["mixed"]["total"], abs=1e-6)


def test_profiles_list_and_use(http, rpc):
    r = http.put("/v1/profiles/relevance-only", json={"weights": {"factuality": 0, "completeness": 0}},
                 headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.json()["weights"]["factuality"] == 0.0
    assert "relevance-only" in http.get("/v1/profiles").json()["profiles"]
    [res] = score_http(http, [SAMPLES[3]], profile="relevance-only")
    assert res["mixed"]["total"] == pytest.approx(res["types"]["relevance"]["total"])
    stub, _ = rpc
    names = [p.name for p in stub.ListProfiles(pb2.ListProfilesRequest(), timeout=10).profiles]
    assert names[0] == "default" and "relevance-only" in names


def qa_prompt(item: dict) -> str:
    """The QA-Feedback prompt of an item (`question: Q context: wikipage: T text: P | ...`), as
    OpenRLHF sends it."""
    return f"question: {item['question']} context: " + " | ".join(
        f"wikipage: {p.split(': ', 1)[0]} text: {p.split(': ', 1)[1]}" for p in item["passages"])


def test_openrlhf_endpoint(http):
    from service.openrlhf import parse_prompt

    s = SAMPLES[4]
    prompt = qa_prompt(s)
    assert parse_prompt(prompt) == (s["question"], tuple(s["passages"]))
    r = http.post("/v1/openrlhf", json={"query": [prompt + s["response"]], "prompts": [prompt]})
    assert r.status_code == 200, r.text
    [reward] = r.json()["rewards"]
    [res] = score_http(http, [s])
    assert reward == pytest.approx(res["mixed"]["total"], abs=1e-5)
    bad = http.post("/v1/openrlhf", json={"query": ["something else"], "prompts": [prompt]})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "query[0]"


def test_openrlhf_as_openrlhf_sends_it(http):
    """OpenRLHF's request: batched query / prompts / labels, one prompt left-truncated (its first
    words cut, whitespace changed by decoding), chat-templated prompts; per-type extra_logs back."""
    s = SAMPLES[4]
    prompt = qa_prompt(s)
    chat = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    words = prompt.split()
    truncated = "  ".join(words[len(words) // 3:])  # left-truncated, and decoded with other spaces
    body = {"query": [prompt + s["response"], truncated + s["response"], chat + s["response"]],
            "prompts": [prompt, prompt, chat], "labels": ["", None, "gold"]}
    r = http.post("/v1/openrlhf", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    [reference] = score_http(http, [s])
    assert out["rewards"] == pytest.approx([reference["mixed"]["total"]] * 3, abs=1e-5)
    assert out["scores"] == out["rewards"]
    for name, t in reference["types"].items():
        assert out["extra_logs"][f"fgrm/{name}"] == pytest.approx([t["total"]] * 3, abs=1e-5)
    empty = http.post("/v1/openrlhf", json={"query": [], "prompts": [], "labels": []})
    assert empty.status_code == 200 and empty.json()["rewards"] == []


def test_grpc_feedback_types_health_and_reflection(rpc):
    stub, channel = rpc
    types = stub.ListFeedbackTypes(pb2.ListFeedbackTypesRequest(), timeout=10).types
    assert {t.name for t in types} >= {"relevance", "factuality", "completeness"}
    policy = {t.name: (t.reads_reference, t.reference_min_words, round(t.reference_min_context_share, 6))
              for t in types}
    assert policy == {"relevance": (True, 10, 0.3), "factuality": (False, 0, 0.0), "completeness": (True, 0, 0.3)}
    assert {t.name: dict(t.quality) for t in types} == _recorded_quality()  # doubles: exact on both wires
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service="fgrm.v1.RewardService"), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    [answer] = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=5))
    names = {s.name for s in answer.list_services_response.service}
    assert {"fgrm.v1.RewardService", "grpc.health.v1.Health"} <= names


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("body, field, words", [
    ({"items": [{"respnse": "x"}]}, "items[0].response", "Field required"),
    ({"items": [{"response": 5}]}, "items[0].response", "string"),
    ({"items": [{"response": "x"}], "weights": {"relevance": -1}}, "weights.relevance", "in [0, 1e+06]"),
    ({"items": [{"response": "x"}], "weights": {"fluency": 1}}, "weights.fluency", "unknown feedback type"),
    ({"items": [{"response": "x"}], "profile": "nope"}, "profile", "unknown profile 'nope'"),
    ({"items": [{"response": "abc", "token_offsets": [[0, 9]]}]}, "items[0].token_offsets[0]", "past the response"),
    ({"items": [{"response": "word " * 2000}]}, "items[0].response", "the model's limit is"),
])
def test_http_errors_name_the_field(http, body, field, words):
    r = http.post("/v1/score", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["kind"] == "invalid_input" and err["field"] == field and words in err["message"]
    assert "Traceback" not in r.text


def test_http_nan_weight_is_refused(http):
    r = http.post("/v1/score", content=b'{"items": [{"response": "x"}], "weights": {"relevance": NaN}}',
                  headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "weights.relevance"


def test_grpc_errors_name_the_field(rpc):
    stub, _ = rpc
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(pb2.ScoreRequest(items=[pb2.Item(response="x")], weights={"relevance": float("nan")}), timeout=10)
    e = err.value
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    md = dict(e.trailing_metadata())
    assert md["fgrm-error-kind"] == "invalid_input" and md["fgrm-field"] == "weights.relevance"
    assert e.details().startswith("weights.relevance: weight must be a finite number")
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(pb2.ScoreRequest(items=[pb2.Item(response="word " * 2000)]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit is" in err.value.details()


def test_bad_item_does_not_affect_concurrent_requests(http):
    ref = score_http(http, SAMPLES[:3])

    def good(i):
        return score_http(http, [SAMPLES[i]])[0]

    def bad(_):
        return http.post("/v1/score", json={"items": [SAMPLES[0], {"response": "word " * 2000}]})

    with cf.ThreadPoolExecutor(6) as pool:
        goods = [pool.submit(good, i) for i in range(3)]
        bads = [pool.submit(bad, i) for i in range(3)]
        for b in bads:
            assert b.result().status_code == 400
        for g, r in zip(goods, ref):
            np.testing.assert_allclose(numbers(g.result()), numbers(r), atol=1e-5)


def test_grpc_deadline_is_honoured(rpc):
    stub, _ = rpc
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(pb2.ScoreRequest(items=[grpc_item(s) for s in SAMPLES]), timeout=0.05)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_metrics_exposed_with_fgrm_prefix(http, rpc):
    # this test makes every series it reads, so it passes alone as well as after the others
    stub, _ = rpc
    score_http(http, [SAMPLES[0]])
    stub.Score(pb2.ScoreRequest(items=[grpc_item(SAMPLES[0])]), timeout=120)
    bad = http.post("/v1/score", json={"items": [{"response": 5}]})
    assert bad.status_code == 400 and bad.json()["error"]["kind"] == "invalid_input"
    text = http.get("/metrics").text
    for name in ("fgrm_queue_wait_seconds_count", "fgrm_batch_size_count", "fgrm_batch_tokens_count",
                 "fgrm_batch_padding_fraction_count", "fgrm_forward_seconds_count", 'fgrm_reward_count{type="relevance"}',
                 'fgrm_errors_total{kind="invalid_input"}', 'fgrm_requests_total{api="score",transport="http"}'):
        assert name in text, name
    assert 'fgrm_requests_total{api="score",transport="grpc"}' in text


def errors_counted(http, kind: str) -> float:
    found = re.search(rf'^fgrm_errors_total\{{kind="{kind}"\}} (\S+)$', http.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def requests_counted(http, transport: str, api: str) -> float:
    found = re.search(rf'^fgrm_requests_total\{{api="{api}",transport="{transport}"\}} (\S+)$', http.get("/metrics").text,
                      re.M)
    return float(found.group(1)) if found else 0.0


def test_every_error_answered_is_counted_once_whoever_refused_it(http, rpc):
    # The engine counts the errors of the requests it runs; the transports count what they refuse
    # before it (body validation, the request gate, decoding). Each exactly once, and each refused
    # request as a request too, so that errors never outnumber requests.
    stub, _ = rpc
    before = {k: errors_counted(http, k) for k in ("invalid_input", "unsupported_media_type")}
    before_requests = {api: requests_counted(http, "http", api) for api in ("score", "refused")}
    refusals = [
        http.post("/v1/score", json={"items": [{"response": 5}]}),  # BentoML's validation, rewritten
        http.post("/v1/score", json={"items": [{"response": "x", "token_offsets": [[0, 9]]}]}),  # the engine's checks
        http.post("/v1/score", json={"items": [{"response": "word " * 2000}]}),  # the engine
        http.post("/v1/score", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"}),
    ]
    assert [r.status_code for r in refusals] == [400, 400, 400, 415]
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(pb2.ScoreRequest(items=[pb2.Item(response="word " * 2000)]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors_counted(http, "invalid_input") == before["invalid_input"] + 4
    assert errors_counted(http, "unsupported_media_type") == before["unsupported_media_type"] + 1
    # two refused before the engine (BentoML's validation, the 415), two refused by it
    assert requests_counted(http, "http", "refused") == before_requests["refused"] + 2
    assert requests_counted(http, "http", "score") == before_requests["score"] + 2


def test_the_worker_hid_its_start_up_heap_from_the_garbage_collector(http):
    # Full collections over the start-up heap stalled the event loop 90-220 ms under load
    # (RELIABILITY.md, "Overload"); the worker freezes it once the models are loaded.
    frozen = re.search(r"^fgrm_gc_frozen_objects(?:\{[^}]*\})? (\S+)$", http.get("/metrics").text, re.M)
    assert frozen, "fgrm_gc_frozen_objects missing from /metrics"
    assert float(frozen.group(1)) > 100_000  # torch, transformers, BentoML and the models: ~290,000
