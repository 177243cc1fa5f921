import torch

from trainattn.core.spans import encode_texts, encode_with_objects, locate_object

PROBE = "Libya maintains diplomatic relations with Brazil ."


def decode(tokenizer, ids, positions):
    return tokenizer.decode([ids[p] for p in positions])


def test_object_tokens_decode_to_the_object_with_its_leading_space(tokenizer):
    ids, positions = locate_object(tokenizer, PROBE, "Brazil")
    assert positions, "object not located"
    assert decode(tokenizer, ids, positions).strip() == "Brazil"
    assert positions == list(range(positions[0], positions[-1] + 1))


def test_object_at_the_start_of_the_text_without_a_leading_space(tokenizer):
    ids, positions = locate_object(tokenizer, "Brazil is a country .", "Brazil")
    assert positions[0] == 0
    assert decode(tokenizer, ids, positions) == "Brazil"


def test_last_occurrence_is_taken(tokenizer):
    text = "Welsh is spoken ; the official language of Wales is Welsh"
    ids, positions = locate_object(tokenizer, text, "Welsh")
    assert positions[-1] == len(ids) - 1
    assert decode(tokenizer, ids, positions).strip() == "Welsh"


def test_missing_or_truncated_object_gives_empty_positions(tokenizer):
    assert locate_object(tokenizer, PROBE, "Argentina")[1] == []
    ids, positions = locate_object(tokenizer, PROBE, "Brazil")
    assert locate_object(tokenizer, PROBE, "Brazil", max_length=positions[0])[1] == []


def test_slow_tokenizer_fallback_searches_both_space_variants(tokenizer):
    class NoOffsets:
        def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
            if return_offsets_mapping:
                raise NotImplementedError
            return {"input_ids": tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]}

    fast = locate_object(tokenizer, PROBE, "Brazil")
    slow = locate_object(NoOffsets(), PROBE, "Brazil")
    assert slow == fast


def test_left_and_right_padding_mark_the_same_tokens(tokenizer):
    texts = [PROBE, "The official language of Wales is Welsh .", "no object here"]
    objects = ["Brazil", "Welsh", "Oslo"]
    right = encode_with_objects(tokenizer, texts, objects, padding_side="right")
    left = encode_with_objects(tokenizer, texts, objects, padding_side="left")
    assert right.located.tolist() == [True, True, False]
    assert left.located.tolist() == [True, True, False]
    for i in range(3):
        r = right.input_ids[i][right.object_mask[i]]
        lft = left.input_ids[i][left.object_mask[i]]
        assert torch.equal(r, lft)
        assert torch.equal(
            right.position_ids[i][right.attention_mask[i].bool()],
            left.position_ids[i][left.attention_mask[i].bool()],
        )
    assert (left.attention_mask[:, -1] == 1).all()


def test_encode_texts_pads_and_marks_nothing(tokenizer):
    batch = encode_texts(tokenizer, ["a b", "a b c d e"], padding_side="left")
    assert batch.attention_mask.sum(-1).tolist() == [
        len(tokenizer("a b")["input_ids"]),
        len(tokenizer("a b c d e")["input_ids"]),
    ]
    assert not batch.object_mask.any()
