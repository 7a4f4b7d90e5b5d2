"""The optional per-item `reference` (a gold answer): accepted on both transports of the real
service, limited and type-checked like the other item fields, and carried to the engine's Item.

What the models make of it is theirs (tests/models); here only that it arrives, that a bad one
is refused naming `items[i].reference`, and that giving one never changes a result's shape."""

from __future__ import annotations

import re

import grpc
import numpy as np
import pytest

from service.domain import Item
from service.errors import InvalidInput
from service.proto import stubs
from tests.service.conftest import make_engine
from tests.service.test_service import SAMPLES, grpc_result_as_dict, numbers, qa_prompt, score_http, structure

pb2, pb2_grpc = stubs()
REFERENCE = ("The capital of France is Paris, on the Seine; it has been the capital since the "
             "tenth century.")
LIMIT = 20_000  # Settings.max_reference_chars, which the shared service keeps at its default


def with_reference(item: dict, reference: str = REFERENCE) -> dict:
    return {**item, "reference": reference}


@pytest.fixture(scope="module")
def stub(channel):
    return pb2_grpc.RewardServiceStub(channel)


def grpc_item(it: dict):
    return pb2.Item(question=it.get("question", ""), passages=it.get("passages", []), response=it["response"],
                    reference=it.get("reference", ""))


# ----------------------------------------------------------------------------- engine (tiny models)

def test_the_engine_keeps_the_reference_through_validation(tiny_dir):
    """check_items rebuilds an item with offsets; the reference must survive that rebuild."""
    engine, _ = make_engine(tiny_dir / "types.toml")
    [kept] = engine.check_items([Item("ok.", "q?", ("p",), ((0, 3),), "gold")])
    assert (kept.reference, kept.token_offsets) == ("gold", ((0, 3),))
    assert Item("ok.", "q?", ("p",), None).reference == ""  # positional constructions still hold


def test_the_engine_limits_the_reference(tiny_dir):
    engine, registry = make_engine(tiny_dir / "types.toml")
    engine.check_items([Item("ok.", reference="r" * LIMIT)])  # at the limit: fine
    with pytest.raises(InvalidInput) as err:
        engine.check_items([Item("ok."), Item("ok.", reference="r" * (LIMIT + 1))])
    assert err.value.field == "items[1].reference"
    assert err.value.message == f"items[1].reference: {LIMIT + 1} characters; the limit is {LIMIT} (max_reference_chars)"


# ----------------------------------------------------------------------------- HTTP (real service)

def test_http_accepts_a_reference_and_the_result_keeps_its_shape(http):
    items = SAMPLES[:2]
    plain = score_http(http, items)
    given = score_http(http, [with_reference(items[0]), with_reference(items[1], "")])
    assert len(given) == len(plain) == 2
    for a, b in zip(plain, given):
        assert structure(a) == structure(b)  # same types, same segments, same granularities
        assert [t["granularity"] for t in a["types"].values()] == [t["granularity"] for t in b["types"].values()]
        assert a["mixed"]["weights"] == b["mixed"]["weights"]
        assert np.isfinite(numbers(b)).all()
    # an empty reference is no reference
    np.testing.assert_allclose(numbers(given[1]), numbers(plain[1]), atol=1e-5)


@pytest.mark.parametrize("reference", [5, None, ["a", "b"], {"text": "a"}])
def test_http_non_string_reference_is_refused_naming_the_field(http, reference):
    r = http.post("/v1/score", json={"items": [{"response": "Paris.", "reference": reference}]})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"kind": "invalid_input", "field": "items[0].reference",
                                  "message": "items[0].reference: Input should be a valid string"}}


def test_http_over_long_reference_is_refused_naming_the_limit(http):
    r = http.post("/v1/score", json={"items": [with_reference(SAMPLES[0], "r" * (LIMIT + 1))]})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"kind": "invalid_input", "field": "items[0].reference",
                                  "message": f"items[0].reference: {LIMIT + 1} characters; the limit is "
                                             f"{LIMIT} (max_reference_chars)"}}


def test_openapi_documents_the_reference(http):
    item = http.get("/docs.json").json()["components"]["schemas"]["ItemIn"]
    prop = item["properties"]["reference"]
    assert prop["type"] == "string" and prop["default"] == "" and prop["maxLength"] == LIMIT
    assert "reference" not in item.get("required", [])
    said = http.get("/docs.json").json()["components"]["schemas"]["TypeResultOut"]["properties"]["reference"]
    assert {"enum": ["read", "too_short", "unrelated"], "type": "string"} in said["anyOf"]


# ----------------------------------------------------------------------------- gRPC (real service)

def test_grpc_accepts_a_reference_and_agrees_with_http(http, stub):
    items = [with_reference(s) for s in SAMPLES[:2]]
    via_http = score_http(http, items, weights={"relevance": 0.5})
    reply = stub.Score(pb2.ScoreRequest(items=[grpc_item(i) for i in items], weights={"relevance": 0.5}),
                       timeout=120)
    via_grpc = [grpc_result_as_dict(r) for r in reply.results]
    assert len(via_grpc) == 2
    for h, g in zip(via_http, via_grpc):
        # the same reference reaches the same engine: the same result to float precision
        assert structure(h) == structure(g) and h["mixed"]["weights"] == g["mixed"]["weights"]
        np.testing.assert_allclose(numbers(g), numbers(h), atol=1e-5)


def test_grpc_over_long_reference_is_refused_naming_the_field(stub):
    item = pb2.Item(question="q?", response="Paris.", reference="r" * (LIMIT + 1))
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(pb2.ScoreRequest(items=[pb2.Item(response="Fine."), item]), timeout=30)
    e = err.value
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    md = dict(e.trailing_metadata())
    assert md["fgrm-error-kind"] == "invalid_input" and md["fgrm-field"] == "items[1].reference"
    assert e.details() == f"items[1].reference: {LIMIT + 1} characters; the limit is {LIMIT} (max_reference_chars)"


# ----------------------------------------------------------------------------- what the shipped models do with it

HAMLET = {"question": "Who wrote Hamlet?",
          "passages": ["Hamlet: Hamlet is a tragedy written by William Shakespeare between 1599 and 1601. "
                       "It is set in Denmark."],
          "response": "Hamlet is a tragedy written by William Shakespeare. It is set in Denmark, where the "
                      "prince avenges his father. Bananas are rich in potassium and grow in warm places."}
HAMLET_REFERENCE = ("Hamlet is a tragedy written by William Shakespeare between 1599 and 1601. It is set in "
                    "Denmark and tells how Prince Hamlet avenges the murder of his father by his uncle Claudius.")
# under the twin's floor of 10 distinct content words (checkpoint reference_relevance_min_words)
SHORT_REFERENCE = "William Shakespeare"
# passages long enough to judge a reference by (models.signals.REFERENCE_JUDGE_MIN_WORDS)
HAMLET_LONG = {**HAMLET, "passages": [
    "Hamlet: Hamlet is a tragedy written by William Shakespeare between 1599 and 1601. It is set in Denmark and "
    "tells how Prince Hamlet avenges the murder of his father, King Hamlet, by his uncle Claudius, who seized the "
    "throne and married the widowed queen Gertrude. The play was first printed in a quarto of 1603 and is the "
    "longest Shakespeare wrote, with about thirty thousand words in all."]}
# another question's answer (a data-loader bug): shares none of its words with HAMLET_LONG's question and passages
UNRELATED_REFERENCE = ("The Eiffel Tower was built for the 1889 World's Fair in Paris, designed by Gustave Eiffel's "
                       "engineering company, and stood as the tallest structure in the world until 1930.")


def _p(result, kind):
    return [s["p_error"] for s in result["types"][kind]["segments"]]


def test_the_reference_heads_score_relevance_and_completeness_and_leave_factuality(http):
    plain, given = score_http(http, [HAMLET, with_reference(HAMLET, HAMLET_REFERENCE)])
    # relevance: read against the reference, the off-topic banana sentence is more surely an
    # error and the sentence the reference says less so
    rel0, rel1 = _p(plain, "relevance"), _p(given, "relevance")
    assert rel1 != rel0
    assert rel1[0] < rel0[0] and rel1[-1] > 0.5
    # factuality is about the passages: the reference heads keep the reference-free one
    np.testing.assert_allclose(_p(given, "factuality"), _p(plain, "factuality"), atol=1e-6)
    assert given["types"]["completeness"]["segments"][0]["score"] != plain["types"]["completeness"]["segments"][0]["score"]


def test_a_short_reference_leaves_relevance_as_without_one_and_still_informs_completeness(http):
    # The twin learnt long gold answers: sent a two-word answer it flagged nearly every
    # sub-sentence (docs/quality/experiments/terse_reference.py), so relevance falls back to the
    # reference-free head, exactly; completeness still reads the reference (better on CV).
    plain, short = score_http(http, [HAMLET, with_reference(HAMLET, SHORT_REFERENCE)])
    assert _p(short, "relevance") == pytest.approx(_p(plain, "relevance"), abs=1e-6)
    assert [s["reward"] for s in short["types"]["relevance"]["segments"]] == pytest.approx(
        [s["reward"] for s in plain["types"]["relevance"]["segments"]], abs=1e-6)
    assert short["types"]["completeness"]["total"] != pytest.approx(plain["types"]["completeness"]["total"],
                                                                    abs=1e-4)


def test_a_reference_written_for_another_question_is_dropped_and_every_type_scores_as_without_one(http):
    # Read by the twin, another question's gold answer made relevance worse than no reference
    # (AUC 0.632 against 0.723 on CV) and would pay a policy to talk about that other question.
    plain, other, own = score_http(http, [HAMLET_LONG, with_reference(HAMLET_LONG, UNRELATED_REFERENCE),
                                          with_reference(HAMLET_LONG, HAMLET_REFERENCE)])
    assert structure(other) == structure(plain)
    np.testing.assert_allclose(numbers(other), numbers(plain), atol=1e-6)
    assert _p(own, "relevance") != pytest.approx(_p(plain, "relevance"), abs=1e-4)  # the same passages, its own reference: read


def _references_counted(http) -> dict[tuple[str, str], float]:
    counts = {}
    for labels, value in re.findall(r"^fgrm_references_total\{([^}]*)\} (\S+)$", http.get("/metrics").text, re.M):
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counts[(lab["type"], lab["read"])] = float(value)
    return counts


def test_each_type_says_what_it_did_with_the_reference_on_both_transports(http, stub):
    items = [with_reference(HAMLET, HAMLET_REFERENCE), with_reference(HAMLET, SHORT_REFERENCE),
             with_reference(HAMLET_LONG, UNRELATED_REFERENCE), HAMLET, with_reference(HAMLET, "")]
    via_http = score_http(http, items)
    reply = stub.Score(pb2.ScoreRequest(items=[grpc_item(i) for i in items]), timeout=120)
    said = [{name: t.get("reference") for name, t in r["types"].items()} for r in via_http]
    # factuality reads no reference, so it never says; without one (or an empty one) no type does
    assert said == [{"relevance": "read", "factuality": None, "completeness": "read"},
                    {"relevance": "too_short", "factuality": None, "completeness": "read"},
                    {"relevance": "unrelated", "factuality": None, "completeness": "unrelated"},
                    {"relevance": None, "factuality": None, "completeness": None},
                    {"relevance": None, "factuality": None, "completeness": None}]
    assert all("reference" not in t for r in via_http[3:] for t in r["types"].values())  # left out, not null
    assert [{name: t.reference or None for name, t in r.types.items()} for r in reply.results] == said


def test_references_are_counted_read_too_short_or_unrelated_per_type(http):
    before = _references_counted(http)
    score_http(http, [with_reference(HAMLET, HAMLET_REFERENCE), with_reference(HAMLET, SHORT_REFERENCE), HAMLET,
                      with_reference(HAMLET_LONG, UNRELATED_REFERENCE)])
    after = _references_counted(http)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)}
    assert {k: v for k, v in delta.items() if v} == {("relevance", "read"): 1.0, ("relevance", "too_short"): 1.0,
                                                     ("completeness", "read"): 2.0, ("relevance", "unrelated"): 1.0,
                                                     ("completeness", "unrelated"): 1.0}


def test_an_answer_that_covers_the_reference_beats_one_that_does_not(http):
    covered = with_reference({**HAMLET, "response": "Hamlet is a tragedy written by William Shakespeare between "
                                                    "1599 and 1601."}, HAMLET_REFERENCE)
    off = with_reference({**HAMLET, "response": "Hamlet is set in Denmark. The prince avenges his father."},
                         HAMLET_REFERENCE)
    a, b = score_http(http, [covered, off])
    assert a["types"]["completeness"]["total"] > b["types"]["completeness"]["total"]
    assert a["mixed"]["total"] > b["mixed"]["total"]


def test_rewards_with_and_without_a_reference_do_not_depend_on_the_batch(http):
    items = [with_reference(HAMLET, HAMLET_REFERENCE), HAMLET, with_reference(SAMPLES[0], "Paris is the capital."),
             SAMPLES[1]]
    together = score_http(http, items)
    for item, res in zip(items, together):
        [alone] = score_http(http, [item])
        assert structure(alone) == structure(res)
        np.testing.assert_allclose(numbers(alone), numbers(res), atol=1e-5)


# ----------------------------------------------------------------------------- OpenRLHF: labels as references

def _openrlhf_body(items):
    prompts = [qa_prompt(it) for it in items]
    return {"query": [p + it["response"] for p, it in zip(prompts, items)], "prompts": prompts,
            "labels": [it.get("reference") for it in items]}


def test_openrlhf_labels_are_references_only_when_the_url_asks(http):
    items = [with_reference(HAMLET, HAMLET_REFERENCE), HAMLET]  # the second query's label is null
    body = _openrlhf_body(items)
    plain, given = score_http(http, [HAMLET, HAMLET]), score_http(http, items)
    r = http.post("/v1/openrlhf", json=body)  # labels ignored, as before
    assert r.status_code == 200, r.text
    assert r.json()["rewards"] == pytest.approx([x["mixed"]["total"] for x in plain], abs=1e-5)
    r = http.post("/v1/openrlhf?labels=reference", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["rewards"] == pytest.approx([x["mixed"]["total"] for x in given], abs=1e-5)
    assert r.json()["rewards"][0] != pytest.approx(plain[0]["mixed"]["total"], abs=1e-3)
    # and it says, per type, which queries' references were read (the second has none)
    logs = r.json()["extra_logs"]
    assert {k: v for k, v in logs.items() if k.startswith("fgrm/reference_read/")} == {
        "fgrm/reference_read/relevance": [1.0, 0.0], "fgrm/reference_read/factuality": [0.0, 0.0],
        "fgrm/reference_read/completeness": [1.0, 0.0]}
    assert not any(k.startswith("fgrm/reference_read/") for k in http.post("/v1/openrlhf", json=body).json()["extra_logs"])
    short = http.post("/v1/openrlhf?labels=reference", json=_openrlhf_body([with_reference(HAMLET, SHORT_REFERENCE)]))
    assert short.json()["extra_logs"]["fgrm/reference_read/relevance"] == [0.0]  # too short: not read
    assert short.json()["extra_logs"]["fgrm/reference_read/completeness"] == [1.0]


@pytest.mark.parametrize("url, labels, field, message", [
    ("/v1/openrlhf?labels=reference", ["one"], "labels",
     "labels: 1 labels for 2 queries; with ?labels=reference each query needs its reference answer (or null)"),
    ("/v1/openrlhf?labels=reference", ["one", 5], "labels[1]",
     "labels[1]: a reference answer must be a string or null, not int"),
    ("/v1/openrlhf?labels=reference", ["one", "r" * (LIMIT + 1)], "labels[1]",
     f"labels[1]: {LIMIT + 1} characters; the limit is {LIMIT} (max_reference_chars)"),
    ("/v1/openrlhf?labels=gold", ["one", "two"], "labels",
     "labels: the URL's labels='gold' is not known; labels=reference uses each label as its query's reference answer"),
])
def test_openrlhf_bad_labels_are_refused_naming_them(http, url, labels, field, message):
    body = {**_openrlhf_body([HAMLET, HAMLET]), "labels": labels}
    r = http.post(url, json=body)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"kind": "invalid_input", "field": field, "message": message}}
