"""models.segment: exact character spans, the paper's sub-sentence rule, empty input."""

import random

import pytest

from models.segment import GRANULARITIES, Segment, sentences, split, subsentences

TRICKY = [
    "Dr. Smith went to the U.S. in 2003. He paid $3.50 for a café au lait.",
    "  Leading and trailing   whitespace runs.   Second\tsentence\there!  \n",
    "Ünïcödé façade — naïve résumé. 日本語の文。 Emoji 😀 ok. Skin tone 👍🏽 too!",
    "Line one\n\nLine two\r\n\r\nLine three.",
    "same. same. same.",
    "no punctuation at all",
    "Wait... what?! Really?? Yes.",
    '"Quoted," he said. "Again!"',
    "Non\u00a0breaking\u00a0spaces. Thin\u2009space.\u3000Ideographic space.",
    "1. First item\n2. Second item\n3. Third",
    "';?.b\u00a0!!?\n?",  # pysbd drops a character of the "!!?" run: it must still be covered
]


def _check_spans(text: str, segs: list[Segment]) -> None:
    prev_end = 0
    for s in segs:
        assert text[s.start:s.end] == s.text
        assert s.text and s.text == s.text.strip()
        assert s.start >= prev_end  # ordered, no overlap
        prev_end = s.end
    covered = {i for s in segs for i in range(s.start, s.end)}
    lost = [i for i, ch in enumerate(text) if not ch.isspace() and i not in covered]
    assert not lost, f"characters outside every segment: {[text[i] for i in lost]}"


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("text", TRICKY)
def test_spans_round_trip_and_cover_every_character(text, granularity):
    _check_spans(text, split(text, granularity))


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("text", ["", " ", "\n\t \r\n", "\u00a0\u3000"])
def test_empty_or_whitespace_only_gives_no_segments(text, granularity):
    assert split(text, granularity) == []


def test_random_text_never_loses_characters():
    rng = random.Random(7)
    alphabet = list("ab .,;!?\n\t\u00a0é😀\"'") + ["Dr.", "U.S.", "3.5", "...", "!!?"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for g in GRANULARITIES:
            _check_spans(text, split(text, g))


def test_sentences_keep_abbreviations_and_decimals_together():
    text = "Dr. Smith went to the U.S. in 2003. He paid $3.50 for it."
    assert [s.text for s in sentences(text)] == ["Dr. Smith went to the U.S. in 2003.", "He paid $3.50 for it."]


def test_repeated_sentences_get_their_own_spans():
    assert [(s.start, s.end) for s in sentences("same. same. same.")] == [(0, 5), (6, 11), (12, 17)]


def test_response_granularity_is_the_stripped_text():
    assert split("  Two sentences.  Here.\n", "response") == [Segment(2, 23, "Two sentences.  Here.")]


def test_subsentence_rule_splits_after_punctuation_when_more_than_five_words_remain():
    # splits after "f," (6 words remain) but not after "g," (5 remain); a-f merge into one piece
    text = "a, b, c, d, e, f, g, h, i, j, k, l"
    assert [s.text for s in subsentences(text)] == ["a, b, c, d, e, f,", "g, h, i, j, k, l"]


def test_subsentence_rule_merges_pieces_shorter_than_five_words():
    text = "The cat, which was black, sat on the mat, and the dog, which was brown, lay by the door, sleeping soundly."
    # pieces of 2, 3, 4, 3, 3 words merge backwards; the final 5-word piece stands alone
    assert [s.text for s in subsentences(text)] == [
        "The cat, which was black, sat on the mat, and the dog, which was brown,",
        "lay by the door, sleeping soundly.",
    ]


def test_short_sentence_is_never_split():
    assert [s.text for s in subsentences("Yes, no, maybe; who knows?")] == ["Yes, no, maybe; who knows?"]


@pytest.mark.parametrize("text", TRICKY + [
    "First clause here, then a second clause follows, and a third one comes after it. Short. "
    "Another long sentence; with a semicolon in it, a comma, and more words at the end of it!"])
def test_subsentences_refine_sentences(text):
    sent_starts = {s.start for s in sentences(text)}
    subs = subsentences(text)
    assert sent_starts <= {s.start for s in subs}
    # and every sub-sentence lies inside one sentence
    sents = sentences(text)
    assert all(any(t.start <= s.start and s.end <= t.end for t in sents) for s in subs)


def test_unknown_granularity_names_the_choices():
    with pytest.raises(ValueError, match="paragraph.*sentence"):
        split("Text.", "paragraph")
