#!/usr/bin/env python3
"""Writes the small byte-level tokenizer.json fixtures used by tests/engine/tokenizer_*_test.cc.

Both fixtures share one vocabulary: ids 0..255 are the 256 bytes in GPT-2's byte-level alphabet
(id == byte value, unlike GPT-2's own order, so expected ids can be read off an ASCII table),
then merged tokens in merge-rank order, then "zz" (in the vocab without a merge, to tell
ignore_merges apart). llama3/ stores merges as "a b" strings, qwen2/ as ["a", "b"] pairs.
Run from this folder: python3 make_fixtures.py
"""
import json
import os

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


def byte_alphabet():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


ALPHABET = byte_alphabet()


def bl(text):
    return "".join(ALPHABET[b] for b in text.encode("utf-8"))


# Rank order. Each entry: (left, right) in byte-level characters.
MERGES = [
    (bl(" "), "w"), ("o", "r"), (bl(" w"), "or"), ("l", "d"), (bl(" wor"), "ld"),
    ("H", "e"), ("l", "l"), ("He", "ll"), ("Hell", "o"), ("1", "2"), ("12", "3"),
    ("'", "s"), (bl(" "), "i"), (bl(" i"), "t"), (bl("\n"), bl("\n")), (bl(" "), "x"),
    ("4", "5"),
    # "你" is E4 BD A0: "ä½" holds its first two bytes, a token that ends mid-character.
    (bl("你")[0], bl("你")[1]), (bl("你")[:2], bl("你")[2]),
]


def vocab():
    v = {ALPHABET[b]: b for b in range(256)}
    for left, right in MERGES:
        v.setdefault(left + right, len(v))
    v["zz"] = len(v)
    return v


def added(names, first_id, non_special=()):
    out = []
    for i, name in enumerate(names):
        out.append({"id": first_id + i, "content": name, "single_word": False, "lstrip": False,
                    "rstrip": False, "normalized": False, "special": name not in non_special})
    return out


def split_and_byte_level(regex):
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}


def llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                "<|end_header_id|>"]
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added(specials, 300),
        "normalizer": None,
        "pre_tokenizer": split_and_byte_level(LLAMA3_REGEX),
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [300],
                                                      "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab(), "merges": [f"{a} {b}" for a, b in MERGES]},
    }
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
              "tokenizer_class": "PreTrainedTokenizerFast"}
    return tok, config


def qwen2():
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"]
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added(specials, 300, non_special=("<think>",)),
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": split_and_byte_level(QWEN2_REGEX),
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab(), "merges": [[a, b] for a, b in MERGES]},
    }
    config = {"add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>",
              "pad_token": "<|endoftext|>", "tokenizer_class": "Qwen2Tokenizer"}
    return tok, config


def main():
    for name, (tok, config) in {"llama3": llama3(), "qwen2": qwen2()}.items():
        os.makedirs(name, exist_ok=True)
        with open(os.path.join(name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False, indent=1)
        with open(os.path.join(name, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
