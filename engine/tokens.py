"""Special tokens every astdiffuse tokenizer carries, and loading a tokenizer for the engine.

The tokenizer is byte-level BPE (trained by `training.tokenizer`), saved as `tokenizer.json`
beside the model; it must decode every text back exactly, whitespace and indentation included.
"""

from __future__ import annotations

from pathlib import Path

MASK_TOKEN = "<|mask|>"  # the absorbing state of masked diffusion
PAD_TOKEN = "<|pad|>"  # padding, and the end of an infill span: pads inside a span are deleted
EOS_TOKEN = "<|endoftext|>"  # separates documents in packed training sequences
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, MASK_TOKEN, EOS_TOKEN)  # ids 0, 1, 2 when trained


def tokenizer_file(path: str | Path) -> Path:
    """The `tokenizer.json` of a directory, or the file itself; FileNotFoundError if none."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    return file


def load_source_encoder(path: str | Path):
    """The `tokenizers.Tokenizer` that encodes source text: special tokens written in the text
    (a literal "<|mask|>" in a file) are text, never the special token itself."""
    from tokenizers import Tokenizer

    encoder = Tokenizer.from_file(str(tokenizer_file(path)))
    encoder.encode_special_tokens = True
    return encoder


def load_tokenizer(path: str | Path):
    """A transformers `PreTrainedTokenizerFast` from a directory or a `tokenizer.json` file,
    with mask, pad and eos tokens set."""
    from transformers import PreTrainedTokenizerFast

    file = tokenizer_file(path)
    # No clean-up of spaces on decode: decode(encode(text)) must give the text back exactly.
    return PreTrainedTokenizerFast(tokenizer_file=str(file), mask_token=MASK_TOKEN,
                                   pad_token=PAD_TOKEN, eos_token=EOS_TOKEN,
                                   clean_up_tokenization_spaces=False)
