"""models.encoding: marker layout, truncation order (passages, then question), InputTooLong."""

import pytest

from models.encoding import Encoder, rank_passage_sentences
from models.errors import InputTooLong
from models.segment import split

RESPONSE = "Paris is the capital of France. It has about two million inhabitants, and it lies on the Seine."


@pytest.fixture(scope="module")
def make(minilm_tokenizer):
    def make(max_length=128, use_passages=True):
        return Encoder(minilm_tokenizer, max_length, use_passages)
    return make


def _segments(text=RESPONSE, granularity="sub-sentence"):
    return split(text, granularity)


def enc_cost(make, segs):
    """Tokens the response needs with its markers."""
    return make().response_cost(segs)


def _check_markers(enc: Encoder, encoded, segments):
    ids, tok = encoded.input_ids, enc.tokenizer
    assert len(encoded.marker_positions) == len(segments)
    assert [ids[p] for p in encoded.marker_positions] == [enc.marker_id] * len(segments)
    assert ids.count(enc.marker_id) == len(segments)
    bounds = encoded.marker_positions[1:] + [len(ids) - 1]  # the final [SEP] closes the last segment
    for seg, start, end in zip(segments, encoded.marker_positions, bounds):
        assert ids[start + 1:end] == tok(seg.text, add_special_tokens=False)["input_ids"]
    assert ids[0] == enc.cls_id and ids[-1] == enc.sep_id
    assert len(ids) <= enc.max_length


def test_layout_with_passages(make):
    enc = make()
    segs = _segments()
    out = enc.encode("What is Paris?", ["Paris is the capital and largest city of France."], RESPONSE, segs)
    _check_markers(enc, out, segs)
    ids = out.input_ids
    q = enc.tokenizer("What is Paris?", add_special_tokens=False)["input_ids"]
    assert ids[1:1 + len(q)] == q and ids[1 + len(q)] == enc.sep_id
    assert out.passage_tokens > 0
    assert ids[out.marker_positions[0] - 1] == enc.sep_id  # [SEP] after the passages, then the first marker


def test_layout_without_passages_ignores_them(make):
    enc = make(use_passages=False)
    segs = _segments()
    out = enc.encode("What is Paris?", ["Some passage text."], RESPONSE, segs)
    _check_markers(enc, out, segs)
    assert out.passage_tokens == 0
    assert out.input_ids.count(enc.sep_id) == 2


def test_unicode_and_whitespace_runs_keep_one_marker_per_segment(make):
    enc = make()
    text = "  Ünïcödé   façade — naïve.\n\n日本語の文。  Emoji 😀, and more words in this clause here; fine!  "
    segs = _segments(text)
    out = enc.encode("Q?", [], text, segs)
    _check_markers(enc, out, segs)


def test_empty_response_has_no_markers(make):
    enc = make()
    out = enc.encode("Question?", ["A passage."], "", [])
    assert out.marker_positions == []
    assert enc.marker_id not in out.input_ids


def test_passages_are_cut_before_the_question(make):
    enc = make(max_length=64)
    segs = _segments()
    question = "Which city is the capital of France and how many people live there?"
    passages = ["Paris is the capital of France. " * 20]
    out = enc.encode(question, passages, RESPONSE, segs)
    _check_markers(enc, out, segs)
    q = enc.tokenizer(question, add_special_tokens=False)["input_ids"]
    assert out.input_ids[1:1 + len(q)] == q  # the whole question survived
    assert out.passage_tokens < len(enc.tokenizer(passages[0], add_special_tokens=False)["input_ids"])
    assert len(out.input_ids) <= 64


def test_question_is_cut_only_when_it_alone_does_not_fit(make):
    segs = _segments()
    enc = make(max_length=enc_cost(make, segs) + 4 + 5)  # 4 special tokens, room for 5 question tokens
    question = "one two three four five six seven eight nine ten"
    out = enc.encode(question, ["A passage that cannot fit any more."], RESPONSE, segs)
    _check_markers(enc, out, segs)
    assert out.passage_tokens == 0
    assert len(out.input_ids) == enc.max_length
    assert enc.tokenizer.decode(out.input_ids[1:6]) == "one two three four five"


def test_markers_are_never_cut_at_the_exact_limit(make):
    segs = _segments()
    cost = enc_cost(make, segs)
    enc = make(max_length=cost + 4)  # [CLS] [SEP] [SEP] ... [SEP]: only the response fits
    out = enc.encode("A long question that will have to go entirely.", ["passage"], RESPONSE, segs)
    _check_markers(enc, out, segs)
    assert out.input_ids[:3] == [enc.cls_id, enc.sep_id, enc.sep_id]


def test_response_that_cannot_fit_raises_naming_the_limit(make):
    segs = _segments()
    cost = enc_cost(make, segs)
    enc = make(max_length=cost + 3)  # one token short
    with pytest.raises(InputTooLong) as err:
        enc.encode("Q?", [], RESPONSE, segs)
    assert err.value.limit == cost + 3 and err.value.needed == cost + 4
    assert err.value.field == "response"
    assert str(cost + 3) in str(err.value) and "limit" in str(err.value)


def test_passage_sentences_are_ranked_by_overlap_with_the_response():
    passages = ["Berlin is in Germany. Paris lies on the Seine river in France.", "The Seine flows to the sea."]
    ranked = rank_passage_sentences(passages, RESPONSE)
    assert ranked[0] == "Paris lies on the Seine river in France."
    assert sorted(ranked) == sorted(["Berlin is in Germany.", "Paris lies on the Seine river in France.",
                                     "The Seine flows to the sea."])


def test_unknown_marker_is_refused(minilm_tokenizer):
    with pytest.raises(ValueError, match=r"\[NOPE\]"):
        Encoder(minilm_tokenizer, 128, True, marker_token="[NOPE]")
