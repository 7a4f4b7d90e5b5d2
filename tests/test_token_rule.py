"""One token rule on both sides of the wire: the service's `token_rewards` (service.mixing.token_at)
and the trainer's alignment (fgrm_client.align.token_for_char) must put a reward on the same
token for every input. One table of cases, run against both, and a property test over random
offsets with gaps, overlaps and zero-width tokens."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgrm_client.align import token_for_char
from service.mixing import token_at

# (offsets, character, token that receives a reward placed at that character, why)
CASES = [
    (((0, 5), (5, 8), (8, 12)), 11, 2, "inside a token"),
    (((0, 5), (5, 8), (8, 12)), 0, 0, "first character"),
    (((0, 1), (4, 5)), 2, 0, "whitespace gap: the token before it"),
    (((0, 1), (4, 5)), 4, 1, "first character after a gap"),
    (((0, 3), (3, 3), (4, 8)), 3, 0, "gap next to a zero-width token: zero-width tokens never receive"),
    (((0, 3), (3, 3), (4, 8)), 2, 0, "before a zero-width token"),
    (((0, 0), (0, 3)), 0, 1, "a leading special token holds nothing"),
    (((0, 2), (2, 3), (2, 3), (3, 4)), 2, 2, "two tokens hold one character: the last one"),
    (((0, 3), (3, 7), (7, 7)), 6, 1, "trailing EOS with an empty span"),
    (((2, 4), (4, 6)), 0, 0, "before every token: the first token"),
    (((0, 4), (4, 6)), 9, 1, "past every token: the last token"),
    (((0, 0), (0, 0)), 0, 0, "only zero-width tokens: the first token"),
    (((0, 5), (2, 4), (5, 6)), 4, 0, "overlapping spans: the last token that holds it"),
    (((0, 5), (2, 4), (5, 6)), 3, 1, "overlapping spans: both hold it, the later wins"),
]


@pytest.mark.parametrize("offsets, char, expected, why", CASES, ids=[c[3] for c in CASES])
def test_service_and_client_follow_the_table(offsets, char, expected, why):
    assert token_at(offsets, char) == expected, why
    assert token_for_char(offsets, char) == expected, why


@st.composite
def offsets_and_char(draw):
    """Valid token offsets (as check_offsets accepts them: 0 <= start <= end, starts never
    decrease) with gaps, overlaps and zero-width tokens, and a character anywhere around them."""
    n = draw(st.integers(1, 12))
    start, out = 0, []
    for _ in range(n):
        start += draw(st.integers(0, 3))  # 0: same start as the previous token (overlap / zero width)
        width = draw(st.sampled_from([0, 0, 1, 2, 3, 5]))
        out.append((start, start + width))
    limit = max(e for _, e in out) + 2
    return tuple(out), draw(st.integers(0, limit))


@settings(max_examples=2000, deadline=None)
@given(offsets_and_char())
def test_service_and_client_agree_on_random_offsets(case):
    offsets, char = case
    assert token_at(offsets, char) == token_for_char(offsets, char)
