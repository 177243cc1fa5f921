"""Find an object string's tokens inside tokenized text.

Used by the oracle weights (object tokens of a document) and by the probe
metrics (object tokens of a probe) alike, so both read the same positions.

The object is located by characters first: its last occurrence in the text
(as the paper's code takes the last match), then every token whose character
span overlaps it. This handles the leading-space variant (``" Brazil"`` is one
token covering ``"Brazil"``) without guessing. Tokenizers without offset
mappings fall back to searching the token ids of ``object`` and ``" " + object``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncodedBatch:
    """A padded batch with the object's token positions marked.

    Attributes:
        input_ids: ``[batch, seq_len]`` token ids, padded on ``padding_side``.
        attention_mask: ``[batch, seq_len]`` 1 on real tokens.
        position_ids: ``[batch, seq_len]`` 0, 1, … over real tokens (so left
            padding does not shift positions).
        object_mask: ``[batch, seq_len]`` bool, True on the object's tokens.
        located: ``[batch]`` bool, False where the object was not found (or was
            cut off by ``max_length``); such rows have an all-False mask.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    object_mask: torch.Tensor
    located: torch.Tensor

    @property
    def target_mask(self) -> torch.Tensor:
        """``[batch, seq_len - 1]``: object mask aligned with next-token targets."""
        return self.object_mask[:, 1:]

    def to(self, device) -> EncodedBatch:
        return EncodedBatch(*(t.to(device) for t in self.__dict__.values()))


def locate_object(tokenizer, text: str, obj: str, max_length: int | None = None):
    """Token ids of ``text`` and the indices of ``obj``'s tokens in them.

    Returns ``(ids, positions)``; ``positions`` is an empty list when ``obj``
    does not occur in ``text`` or lies beyond ``max_length`` tokens.
    """
    if not obj:
        raise ValueError("object string is empty")
    try:
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, TypeError, KeyError):
        enc, offsets = tokenizer(text, add_special_tokens=True), None
    ids = list(enc["input_ids"])
    if max_length is not None:
        ids = ids[:max_length]
    if offsets is not None:
        start = text.rfind(obj)
        if start < 0:
            return ids, []
        end = start + len(obj)
        positions = [
            i
            for i, (a, b) in enumerate(offsets[: len(ids)])
            if b > a and a < end and b > start
        ]
        return ids, positions
    return ids, _last_subsequence(tokenizer, ids, obj)


def _last_subsequence(tokenizer, ids: list[int], obj: str) -> list[int]:
    best: list[int] = []
    for variant in (obj, " " + obj):
        pattern = tokenizer(variant, add_special_tokens=False)["input_ids"]
        n = len(pattern)
        for s in range(len(ids) - n, -1, -1):
            if n and ids[s : s + n] == pattern:
                if not best or s > best[0]:
                    best = list(range(s, s + n))
                break
    return best


def encode_with_objects(
    tokenizer,
    texts: list[str],
    objects: list[str],
    max_length: int | None = None,
    padding_side: str = "right",
) -> EncodedBatch:
    """Tokenize ``texts``, pad them, and mark where each ``objects[i]`` sits.

    Rows whose object is not located keep an all-False ``object_mask`` and
    ``located=False``; they never raise.
    """
    if len(texts) != len(objects):
        raise ValueError(f"{len(texts)} texts but {len(objects)} objects")
    rows = [locate_object(tokenizer, t, o, max_length) for t, o in zip(texts, objects, strict=False)]
    return _pad(rows, _pad_id(tokenizer), padding_side)


def encode_texts(
    tokenizer, texts: list[str], max_length: int | None = None, padding_side: str = "right"
) -> EncodedBatch:
    """Tokenize and pad plain documents (no object): ``object_mask`` is all False."""
    rows = [(list(tokenizer(t)["input_ids"])[:max_length], []) for t in texts]
    return _pad(rows, _pad_id(tokenizer), padding_side)


def _pad_id(tokenizer) -> int:
    pad_id = tokenizer.pad_token_id
    return tokenizer.eos_token_id if pad_id is None else pad_id


def _pad(rows: list[tuple[list[int], list[int]]], pad_id: int, padding_side: str) -> EncodedBatch:
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not rows:
        raise ValueError("cannot encode an empty batch")
    width = max(len(ids) for ids, _ in rows)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    object_mask = torch.zeros((batch, width), dtype=torch.bool)
    for i, (ids, positions) in enumerate(rows):
        shift = width - len(ids) if padding_side == "left" else 0
        input_ids[i, shift : shift + len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, shift : shift + len(ids)] = 1
        for p in positions:
            object_mask[i, shift + p] = True
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
    return EncodedBatch(input_ids, attention_mask, position_ids, object_mask, object_mask.any(-1))
