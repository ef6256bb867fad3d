"""Tokenizers behind one protocol: the byte model's (one token per UTF-8 byte) and a Hugging Face
tokenizer folder's, with its chat template."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2

__all__ = ["BYTE_OFFSET", "ByteTokenizer", "HFTokenizer", "Tokenizer", "VOCAB_SIZE"]


BYTE_OFFSET = 3


VOCAB_SIZE = 256 + BYTE_OFFSET


class Tokenizer(Protocol):
    """What the encoder needs of a tokenizer."""

    eos_id: int
    pad_id: int
    text_boundary_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of plain content (special-token text is taken literally, never as a control token)."""

    def encode_template(self, text: str) -> list[int]:
        """Token ids of template text, where special tokens are meant."""

    def decode(self, ids: list[int]) -> str: ...

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str | None:
        """The chat template applied to ``messages`` as text; None when the tokenizer has none."""


class ByteTokenizer:
    """UTF-8 bytes shifted by 3 (the ByT5 convention); no chat template.

    >>> tok = ByteTokenizer()
    >>> tok.encode("hé"), tok.decode(tok.encode("hé"))
    ([107, 198, 172], 'hé')"""

    eos_id = EOS_ID
    pad_id = PAD_ID
    text_boundary_id = EOS_ID
    stop_ids = (EOS_ID,)

    def encode(self, text: str) -> list[int]:
        return [b + BYTE_OFFSET for b in text.encode("utf-8")]

    encode_template = encode

    def decode(self, ids: list[int]) -> str:
        return bytes(i - BYTE_OFFSET for i in ids if BYTE_OFFSET <= i < VOCAB_SIZE).decode("utf-8", errors="replace")

    def render_chat(self, messages, add_generation_prompt):  # noqa: ARG002 - the protocol's signature
        return None

    def to_hf(self):
        """The equivalent ``transformers`` tokenizer, for export."""
        from transformers import ByT5Tokenizer

        return ByT5Tokenizer(extra_ids=0)


class HFTokenizer:
    """A Hugging Face tokenizer loaded from a local folder.

    ``text_boundary_id`` starts and ends a plain-text memory: the document separator the model
    was pretrained with (``<|endoftext|>`` when the vocabulary has it; SmolLM2 scores short
    sentences about 1 nat/token better after it than after its chat BOS ``<|im_start|>``), else
    BOS, else EOS.
    """

    def __init__(self, path: str | Path):
        from transformers import AutoTokenizer

        self.hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        hf = self.hf
        vocab = hf.get_vocab()
        self.eos_id = hf.eos_token_id if hf.eos_token_id is not None else 0
        if self.eos_id == hf.bos_token_id and "<|im_end|>" in vocab:
            # some GGUF files (SmolLM2's) name the turn start <|im_start|> as EOS too: an answer ends at <|im_end|>
            self.eos_id = vocab["<|im_end|>"]
        self.pad_id = hf.pad_token_id if hf.pad_token_id is not None else self.eos_id
        boundary = vocab.get("<|endoftext|>")
        if boundary is None:
            boundary = hf.bos_token_id if hf.bos_token_id is not None else self.eos_id
        self.text_boundary_id = boundary
        self.stop_ids = tuple(sorted({self.eos_id, *(
            [vocab["<|im_end|>"]] if "<|im_end|>" in vocab else [])}))

    def encode(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def encode_template(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str | None:
        if not getattr(self.hf, "chat_template", None):
            return None
        return self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def to_hf(self):
        return self.hf
