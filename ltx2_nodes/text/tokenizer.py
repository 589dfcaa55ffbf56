"""Gemma tokenization as the LTX-2 reference does it.

The reference strips the prompt, makes sure it starts with BOS (Gemma 3's tokenizer adds it,
Gemma 4's does not, so it is prepended when missing), adds no EOS, truncates to ``max_length``
(1024) and left-pads to exactly that length, returning the attention mask. Back ends: a Hugging
Face tokenizer folder (``tokenizer.json``, what the reference loads), the ``tokenizer_json`` bytes
of a packed LTX-2.5 text-encoder file (rebuilt like the reference's ``build_gemma_hf_tokenizer``:
a ``PreTrainedTokenizerFast`` around the tokenizers JSON with the packed tokenizer config), and a
raw SentencePiece model (``tokenizer.model``, or the ``spiece_model`` bytes ComfyUI stores inside
its single-file text encoders), which gives the same ids as Gemma 3's folder, and the vocabulary of a GGUF
file (llama.cpp's ``tokenizer.ggml.*`` keys), converted by transformers' GGUF support (what
``from_pretrained(gguf_file=...)`` does; tested to give the SentencePiece model's ids).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError

log = logging.getLogger("ltx2_nodes")

DEFAULT_MAX_LENGTH = 1024

# tokenizer_config.json entries that describe the file rather than being PreTrainedTokenizerFast arguments.
_NOT_TOKENIZER_KWARGS = frozenset({"tokenizer_class", "auto_map", "model_max_length", "processor_class",
                                   "added_tokens_decoder", "backend", "is_local", "local_files_only"})


@dataclass
class TokenBatch:
    """Left-padded ids ``[B, T]``, mask ``[B, T]`` (int64, 1 = token) and how many tokens each prompt lost."""

    ids: torch.Tensor
    mask: torch.Tensor
    dropped: list[int]


def check_text(text: str, what: str = "the prompt") -> str:
    """``text`` if it is valid Unicode (what both tokenizer back ends can read); a lone surrogate (half of a
    UTF-16 pair, e.g. from a JSON ``"\\ud83d"`` escape or undecodable command-line bytes) is refused here,
    naming where it is, instead of failing inside the tokenizer's native code."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be text, got {type(text).__name__}: {text!r:.60}.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        around = text[max(0, exc.start - 20):exc.start + 20].encode("utf-8", "backslashreplace").decode()
        raise InputError(
            f"{what} holds a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start} (near "
            f"{around!r}): half of a UTF-16 pair, which is not valid text. Remove it or re-type that part; in JSON, "
            "write the character itself or both halves of its escape (e.g. \\ud83d\\ude00).") from None
    return text


class PromptTokenizer:
    """Common part of both back ends: BOS + text ids, truncation, left padding."""

    source: str  # what it was loaded from, for messages
    fingerprint: str  # content hash, part of prompt-cache keys
    pad_id: int
    bos_ids: list[int]  # [BOS] or [] when the vocabulary has none
    eos_ids: list[int]

    def encode(self, text: str) -> list[int]:
        """BOS + ids of ``text`` (no EOS), as the reference's tokenizer call produces them."""
        raise NotImplementedError

    def pieces(self, text: str) -> list[int]:
        """Ids of ``text`` alone, no special tokens (to assemble chat turns around special tokens)."""
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_id(self, token: str) -> int | None:
        """Id of a special token such as ``<end_of_turn>``; None when the vocabulary lacks it."""
        raise NotImplementedError

    def batch(self, prompts: list[str], max_length: int = DEFAULT_MAX_LENGTH) -> TokenBatch:
        """Tokenize, truncate beyond ``max_length`` (logging how many tokens were dropped) and left-pad."""
        if max_length < 1:
            raise InputError(f"The token limit (max_length) must be at least 1, got {max_length}.")
        ids = torch.full((len(prompts), max_length), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(prompts), max_length), dtype=torch.int64)
        dropped = []
        for row, prompt in enumerate(prompts):
            tokens = self.encode(check_text(prompt, f"prompt {row}" if len(prompts) > 1 else "the prompt").strip())
            lost = max(0, len(tokens) - max_length)
            if lost:
                log.warning("Prompt %d is %d tokens long; only the first %d are used, %d token(s) dropped "
                            "(starting at: %r).", row, len(tokens), max_length, lost,
                            self.decode(tokens[max_length:max_length + 12]))
                tokens = tokens[:max_length]
            dropped.append(lost)
            if tokens:
                ids[row, max_length - len(tokens):] = torch.tensor(tokens, dtype=torch.int64)
                mask[row, max_length - len(tokens):] = 1
        return TokenBatch(ids, mask, dropped)


class HFPromptTokenizer(PromptTokenizer):
    """A Hugging Face fast tokenizer (from a folder or from packed bytes), used offline."""

    def __init__(self, hf, source: str, fingerprint: str):
        self.hf = hf
        self.source = source
        self.fingerprint = fingerprint
        # The reference pads with eos when the tokenizer defines no pad token.
        pad = self.hf.pad_token_id if self.hf.pad_token_id is not None else self.hf.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self.bos_ids = [self.hf.bos_token_id] if self.hf.bos_token_id is not None else []
        self.eos_ids = [self.hf.eos_token_id] if self.hf.eos_token_id is not None else []

    @classmethod
    def from_folder(cls, folder: Path) -> "HFPromptTokenizer":
        """``tokenizer.json`` + ``tokenizer_config.json`` of a folder."""
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"Could not load the tokenizer in {folder}: {exc}. The folder needs "
                                  "tokenizer.json and tokenizer_config.json from the Gemma release.") from None
        digest = hashlib.sha256()
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (folder / name).is_file():
                digest.update((folder / name).read_bytes())
        return cls(hf, str(folder), digest.hexdigest()[:32])

    @classmethod
    def from_packed(cls, tokenizer_json: bytes, tokenizer_config: dict, source: str) -> "HFPromptTokenizer":
        """A tokenizers JSON and its ``tokenizer_config.json`` as packed in an LTX-2.5 text-encoder file."""
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        kwargs = {k: v for k, v in tokenizer_config.items() if k not in _NOT_TOKENIZER_KWARGS}
        try:
            hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_buffer(tokenizer_json), **kwargs)
        except Exception as exc:  # noqa: BLE001 -- tokenizers raises plain Exception for a bad JSON
            raise CheckpointError(f"{source} is not a valid tokenizer ({exc}). Use the released text-encoder "
                                  "file.") from None
        digest = hashlib.sha256(tokenizer_json)
        digest.update(json.dumps(tokenizer_config, sort_keys=True).encode())
        return cls(hf, source, digest.hexdigest()[:32])

    @classmethod
    def from_gguf(cls, path: Path) -> "HFPromptTokenizer":
        """The vocabulary a GGUF file carries, as a fast tokenizer built by transformers' GGUF converter."""
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 -- the converter raises what its parsers raise
            raise CheckpointError(f"The vocabulary inside {path.name} could not be turned into a tokenizer "
                                  f"({type(exc).__name__}: {exc}). Put Gemma 3's tokenizer.model next to the file "
                                  "(it is used instead).") from None
        fingerprint = hashlib.sha256(hf.backend_tokenizer.to_str().encode()).hexdigest()[:32]
        return cls(hf, f"the vocabulary inside {path.name}", fingerprint)

    def encode(self, text: str) -> list[int]:
        ids = list(self.hf(check_text(text))["input_ids"])
        return ids if ids[:1] == self.bos_ids else self.bos_ids + ids

    def pieces(self, text: str) -> list[int]:
        return list(self.hf(check_text(text), add_special_tokens=False)["input_ids"]) if text else []

    def decode(self, ids: list[int]) -> str:
        size = len(self.hf)  # the embedding table has spare rows beyond the vocabulary
        return self.hf.decode([i for i in ids if 0 <= i < size], skip_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        index = self.hf.convert_tokens_to_ids(token)
        return None if index is None or index == self.hf.unk_token_id else int(index)


class SentencePiecePromptTokenizer(PromptTokenizer):
    """A serialized SentencePiece model (Gemma's ``tokenizer.model`` / ComfyUI's ``spiece_model``)."""

    def __init__(self, model_proto: bytes, source: str):
        import sentencepiece

        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{source} is not a valid SentencePiece tokenizer model ({exc}).") from None
        self.source = source
        self.fingerprint = hashlib.sha256(model_proto).hexdigest()[:32]
        pad, eos, bos = self.sp.pad_id(), self.sp.eos_id(), self.sp.bos_id()
        self.pad_id = pad if pad >= 0 else max(eos, 0)
        self.bos_ids = [bos] if bos >= 0 else []
        self.eos_ids = [eos] if eos >= 0 else []

    def encode(self, text: str) -> list[int]:
        return self.bos_ids + self.pieces(text)

    def pieces(self, text: str) -> list[int]:
        return list(self.sp.encode(check_text(text))) if text else []

    def decode(self, ids: list[int]) -> str:
        size = self.sp.get_piece_size()  # the embedding table has spare rows beyond the vocabulary
        return self.sp.decode([i for i in ids if 0 <= i < size and not self.sp.is_control(i)])

    def token_id(self, token: str) -> int | None:
        index = self.sp.piece_to_id(token)
        return None if index == self.sp.unk_id() else int(index)


def load_tokenizer(location) -> PromptTokenizer:
    """The tokenizer a ``loading.gemma_files.TokenizerLocation`` points at."""
    if location.kind == "hf_folder":
        return HFPromptTokenizer.from_folder(location.path)
    if location.kind == "packed":
        return HFPromptTokenizer.from_packed(*location.packed_assets(), location.describe())
    if location.kind == "gguf":
        return HFPromptTokenizer.from_gguf(location.path)
    return SentencePiecePromptTokenizer(location.sentencepiece_bytes(), location.describe())
