"""A small byte-level BPE vocabulary in GPT-2/Qwen form, trained deterministically on a fixed text.

Every one of the 256 bytes is a token (so the model can emit NUL, control bytes and broken UTF-8),
a few hundred merges make ordinary words a few tokens long, and Qwen's chat markers are special
tokens, so llama.cpp tokenizes and renders the chat template as it would for a real Qwen model.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache

# llama.cpp's token types (gguf.TokenType): NORMAL for text, CONTROL for the chat markers,
# USER_DEFINED for tags Qwen adds as plain (non-special) words.
NORMAL = 1
CONTROL = 3
USER_DEFINED = 4

CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TAG_TOKENS = ("<tool_call>", "</tool_call>", "<think>", "</think>")

MERGE_COUNT = 300

# Text the merges are learned from: English, JSON and the chat template's own words.
TRAINING_TEXT = """
The quick brown fox jumps over the lazy dog. A review of the code found that the function
returns the wrong value when the input is empty, and the test does not check it.
You are a helpful assistant. You may call one or more functions to assist with the user query.
For each function call, return a json object with function name and arguments.
{"name": "read_file", "arguments": {"path": "README.md"}}
{"name": "list_files", "arguments": {"path": "."}}
def main() -> int:
    return 0
The answer is in the file. Findings: none. Evidence: the line number and the path.
system user assistant tool tools function arguments name path content reasoning
"""

# The same shape of split as Qwen's pre-tokenizer: words keep their leading space.
_PRE_SPLIT = re.compile(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+")


@dataclass(frozen=True, kw_only=True)
class Vocabulary:
    """Token texts (byte-level form), their llama.cpp types, and the BPE merges."""

    tokens: tuple[str, ...]
    types: tuple[int, ...]
    merges: tuple[str, ...]

    def token_id(self, text: str) -> int:
        """The id of a token given in its stored (byte-level) text."""
        return self.tokens.index(text)


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, as llama.cpp expects."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + shifted)
            shifted += 1
    return mapping


@cache
def build_vocabulary() -> Vocabulary:
    """The vocabulary: 256 byte tokens, the learned merges, then the special tokens."""
    to_unicode = byte_to_unicode()
    tokens = [to_unicode[byte] for byte in range(256)]
    merges = _learn_merges(to_unicode)
    known = set(tokens)
    for merge in merges:
        merged = merge.replace(" ", "")
        if merged not in known:
            tokens.append(merged)
            known.add(merged)
    types = [NORMAL] * len(tokens)
    tokens.extend(CONTROL_TOKENS)
    types.extend([CONTROL] * len(CONTROL_TOKENS))
    tokens.extend(TAG_TOKENS)
    types.extend([USER_DEFINED] * len(TAG_TOKENS))
    return Vocabulary(tokens=tuple(tokens), types=tuple(types), merges=tuple(merges))


def _learn_merges(to_unicode: dict[int, str]) -> list[str]:
    """Classic BPE training; ties go to the smallest pair so the result never varies."""
    words = Counter(
        tuple(to_unicode[byte] for byte in piece.encode())
        for piece in _PRE_SPLIT.findall(TRAINING_TEXT)
    )
    merges: list[str] = []
    while len(merges) < MERGE_COUNT:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(f"{best[0]} {best[1]}")
        merged_words: Counter[tuple[str, ...]] = Counter()
        for word, count in words.items():
            merged_words[_merge(word, best)] += count
        words = merged_words
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    merged: list[str] = []
    index = 0
    while index < len(word):
        if index + 1 < len(word) and (word[index], word[index + 1]) == pair:
            merged.append(word[index] + word[index + 1])
            index += 2
        else:
            merged.append(word[index])
            index += 1
    return tuple(merged)
