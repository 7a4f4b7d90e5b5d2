"""The optional item `reference` in the client: on the wire when given, absent when empty (so a
server that predates the field still accepts the request), on both codecs, from the trainer
adapters that forward it, and accepted by the real service over both transports."""

import json
from concurrent import futures

import grpc
import httpx
import pytest

from fgrm_client import GrpcClient, HttpClient, Item
from fgrm_client.trainers._common import qa_item
from fgrm_client.trl import FgrmRewardFunc

from .test_grpc import FAST, FakeService
from .test_http import RESULT
from .test_trl import StubClient

REFERENCE = "Troye Sivan's Bloom was released on 31 August 2018."


NONE_READ = ("fgrm: no feedback type of this server read an item's reference, so it changes nothing: its models "
             "read none (GET /v1/feedback-types, reads_reference), or the server predates references. Logged once "
             "per process.")


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fgrm_client" and r.levelname == "WARNING"]


def test_http_sends_the_reference_only_when_given(caplog, monkeypatch):
    from fgrm_client import _core

    monkeypatch.setattr(_core, "_warned", set())  # once per process: forget what earlier tests saw
    bodies = []

    def handler(request):
        body = json.loads(request.content)
        bodies.append(body)
        return httpx.Response(200, json={"results": [RESULT] * len(body["items"])})

    with HttpClient("http://fgrm.test", transport=httpx.MockTransport(handler), retry=FAST) as c:
        c.score([{"question": "q", "response": "r"}, Item("q", "r", reference="  ")])
        assert warnings(caplog) == []  # nothing sent that could have been read
        c.score([{"question": "q", "response": "r", "reference": REFERENCE},
                 Item("q", "r", reference=REFERENCE), {"question": "q", "response": "r"},
                 {"question": "q", "response": "r", "reference": None}, Item("q", "r")])
        c.score([Item("q", "r", reference=REFERENCE)])
    items = bodies[1]["items"]
    assert [it.get("reference") for it in items] == [REFERENCE, REFERENCE, None, None, None]
    assert ["reference" in it for it in items] == [True, True, False, False, False]
    # this server's results say nothing of the references (no type of it reads one): said once
    assert warnings(caplog) == [NONE_READ]


class RecordingService(FakeService):
    def score(self, req, context):
        self.requests = getattr(self, "requests", []) + [req]
        return super().score(req, context)


@pytest.fixture
def fake_grpc():
    fake = RecordingService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((fake.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fake, f"127.0.0.1:{port}"
    server.stop(None)


def test_grpc_sends_the_reference_only_when_given(fake_grpc, caplog, monkeypatch):
    from fgrm_client import _core

    monkeypatch.setattr(_core, "_warned", set())
    fake, addr = fake_grpc
    with GrpcClient(addr, retry=FAST) as c:
        c.score([{"question": "q", "response": "r", "reference": REFERENCE}, Item("q", "r")])
    assert warnings(caplog) == [NONE_READ]
    [req] = fake.requests
    assert [it.reference for it in req.items] == [REFERENCE, ""]
    # proto3: an empty string is not serialised, so an older server sees the same bytes as before
    assert req.items[1].SerializeToString() == fake.pb.Item(question="q", response="r").SerializeToString()


def test_trainer_adapters_forward_a_reference_column():
    client = StubClient()
    FgrmRewardFunc(client)(["q1", "q2"], ["a", "b"], reference=[REFERENCE, ""])
    [(items, _)] = client.calls
    assert items[0]["reference"] == REFERENCE and "reference" not in items[1]
    FgrmRewardFunc(client)(["q"], ["a"])  # no column: no field
    assert "reference" not in client.calls[-1][0][0]
    assert qa_item("q", None, "a", reference=REFERENCE)["reference"] == REFERENCE
    assert "reference" not in qa_item("q", None, "a", reference=None)
    # TRL's column goes through the adapters' one reading of a label: a list of answers joined,
    # anything else refused naming its row
    FgrmRewardFunc(client)(["q"], ["a"], reference=[["Paris", "Paris, France"]])
    assert client.calls[-1][0][0]["reference"] == "Paris; Paris, France"
    with pytest.raises(TypeError, match=r"^reference\[1\]: a reference answer must be text, a number or a list "
                                        r"of them, not dict$"):
        FgrmRewardFunc(client)(["q1", "q2"], ["a", "b"], reference=["Paris", {"text": "Paris"}])


def test_the_real_service_takes_a_reference_over_both_transports(real_service, caplog, monkeypatch):
    from fgrm_client import _core

    monkeypatch.setattr(_core, "_warned", set())  # once per process: forget what earlier tests saw
    url, addr = real_service
    item = {"question": "When does Bloom by Troye Sivan come out?",
            "passages": ["Bloom is the second studio album by Troye Sivan, released on 31 August 2018."],
            "response": "Bloom came out on 31 August 2018. It is his second album."}
    with HttpClient(url) as h, GrpcClient(addr) as g:
        g.wait_until_ready(timeout=30)
        [plain] = h.score([item])
        [rh] = h.score([{**item, "reference": REFERENCE}])
        [rg] = g.score([{**item, "reference": REFERENCE}])
    for r in (rh, rg):
        assert r.types.keys() == plain.types.keys()
        for name, t in r.types.items():
            assert [(s.start, s.end) for s in t.segments] == [(s.start, s.end) for s in plain.types[name].segments]
    assert rh.mixed.total == pytest.approx(rg.mixed.total, abs=1e-6)
    # a 7-word reference: under the relevance floor, read by completeness; both clients parse it
    for r in (rh, rg):
        assert {n: t.reference for n, t in r.types.items()} == {"relevance": "too_short", "factuality": None,
                                                                "completeness": "read"}
    assert {t.reference for t in plain.types.values()} == {None}
    # ... and the client says so once, however many results say it (here one from each client)
    # (and not that no type read it: completeness did)
    said = warnings(caplog)
    assert said == ["fgrm: relevance scored an item as without its reference (too_short): it has fewer distinct "
                    "content words than the checkpoint's reference_relevance_min_words. Logged once per process; "
                    "the service counts them all in fgrm_references_total{read='too_short'}."]
