"""A model's tokenizer from the files its repository publishes, never by running its code.

`tokenizer.json` loads as it is; without one, a byte-level BPE published as `vocab.json` +
`merges.txt` (Qwen2's slow tokenizer, or a copy of it such as Dream's `DreamTokenizer` behind
`auto_map`) is built natively as a Qwen2 fast tokenizer. The added tokens of
`tokenizer_config.json` / `added_tokens.json` keep their published ids, and the special-token
roles (bos, eos, pad, unk, mask) come from `tokenizer_config.json` / `special_tokens_map.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import AstdiffuseError

ROLES = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")
# Tokenizer classes published as vocab.json + merges.txt whose pre-tokenization is Qwen2's
# (Dream's tokenization_dream.py is Qwen2's slow tokenizer under another name).
QWEN2_STYLE = frozenset({"Qwen2Tokenizer", "Qwen2TokenizerFast", "DreamTokenizer",
                         "Qwen3Tokenizer"})


class TokenizerFilesError(AstdiffuseError):
    """The tokenizer files beside a model are missing, unreadable or of an unknown kind."""


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TokenizerFilesError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise TokenizerFilesError(f"{path} holds {type(data).__name__}, not a JSON object")
    return data


def _content(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def has_tokenizer_files(directory: Path) -> bool:
    directory = Path(directory)
    return (directory / "tokenizer.json").is_file() or (
        (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file())


def load_published_tokenizer(directory: str | Path):
    """A transformers fast tokenizer for the model in `directory`, built from its published
    files as described in the module docstring; `TokenizerFilesError` names what was found and
    what was expected when it cannot be."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    config = _read_json(directory / "tokenizer_config.json")
    special_map = _read_json(directory / "special_tokens_map.json")
    if (directory / "tokenizer.json").is_file():
        try:
            backend = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as err:  # tokenizers raises its own exception type
            raise TokenizerFilesError(f"cannot read {directory / 'tokenizer.json'}: {err}") \
                from err
    elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        backend = _qwen2_backend(directory, config.get("tokenizer_class"))
    else:
        found = sorted(p.name for p in directory.iterdir() if "token" in p.name.lower()
                       or p.suffix in (".model", ".txt")) if directory.is_dir() else []
        raise TokenizerFilesError(
            f"no tokenizer beside the model in {directory}: expected tokenizer.json, or "
            f"vocab.json + merges.txt (found {', '.join(found) or 'no tokenizer files'}); "
            "download the model's tokenizer files too")
    _add_published_tokens(backend, directory, config, AddedToken)
    roles = {}
    for role in ROLES:
        token = _content(config.get(role)) or _content(special_map.get(role))
        if token is not None:
            if backend.token_to_id(token) is None:
                raise TokenizerFilesError(
                    f"the tokenizer in {directory} names {token!r} as its {role} but has no such "
                    "token")
            roles[role] = token
    extra = config.get("additional_special_tokens") or special_map.get(
        "additional_special_tokens") or []
    extra = [t for t in (_content(v) for v in extra) if t and backend.token_to_id(t) is not None]
    # No clean-up of spaces on decode: decode(encode(text)) must give the text back exactly.
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False,
                                   additional_special_tokens=extra, **roles)


def _qwen2_backend(directory: Path, class_name: str | None):
    """The Rust tokenizer of a Qwen2-style vocab.json + merges.txt (what transformers'
    Qwen2Tokenizer builds), without any added token yet."""
    from transformers import Qwen2Tokenizer

    if class_name is not None and class_name not in QWEN2_STYLE:
        raise TokenizerFilesError(
            f"the tokenizer in {directory} is a {class_name} published as vocab.json + "
            f"merges.txt without tokenizer.json; astdiffuse builds only Qwen2-style ones "
            f"({', '.join(sorted(QWEN2_STYLE))}) natively. Save it with tokenizer.json")
    try:
        vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        lines = (directory / "merges.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as err:
        raise TokenizerFilesError(f"cannot read the tokenizer files in {directory}: {err}") \
            from err
    merges = [tuple(line.split(" ")) for line in lines
              if line and not line.startswith("#version") and len(line.split(" ")) == 2]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None,
                               eos_token=None, pad_token=None)
    return tokenizer.backend_tokenizer


def _add_published_tokens(backend, directory: Path, config: dict, added_token) -> None:
    """Add tokenizer_config.json's `added_tokens_decoder` and added_tokens.json's tokens in id
    order, each at its published id (TokenizerFilesError when an id cannot be kept)."""
    wanted: dict[int, tuple[str, bool, dict]] = {}
    for key, entry in (config.get("added_tokens_decoder") or {}).items():
        content = _content(entry)
        if content is None:
            continue
        options = {k: bool(entry.get(k, False)) for k in ("lstrip", "rstrip", "single_word")} \
            if isinstance(entry, dict) else {}
        options["normalized"] = bool(entry.get("normalized", False)) \
            if isinstance(entry, dict) else False
        wanted[int(key)] = (content, bool(entry.get("special", True))
                            if isinstance(entry, dict) else True, options)
    for content, index in _read_json(directory / "added_tokens.json").items():
        wanted.setdefault(int(index), (content, True, {"normalized": False}))
    for index in sorted(wanted):
        content, special, options = wanted[index]
        have = backend.token_to_id(content)
        if have is not None:
            if have != index:
                raise TokenizerFilesError(
                    f"the tokenizer in {directory} gives {content!r} id {have}, but its config "
                    f"says {index}")
            continue
        size = backend.get_vocab_size(with_added_tokens=True)
        if size != index:
            raise TokenizerFilesError(
                f"the tokenizer in {directory} declares {content!r} at id {index}, but the next "
                f"free id is {size}: the ids of its added tokens cannot be reproduced")
        token = added_token(content, special=special, **options)
        if special:
            backend.add_special_tokens([token])
        else:
            backend.add_tokens([token])


def published_tokens(directory: str | Path) -> tuple[frozenset, bool]:
    """(the added / special tokens the tokenizer files in `directory` publish, whether they
    name a mask token), read from the JSON files alone: what family detection looks at."""
    directory = Path(directory)
    config = _read_json(directory / "tokenizer_config.json")
    special_map = _read_json(directory / "special_tokens_map.json")
    tokens = {_content(entry) for entry in (config.get("added_tokens_decoder") or {}).values()}
    tokens |= set(_read_json(directory / "added_tokens.json"))
    if (directory / "tokenizer.json").is_file():
        try:
            added = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8")).get(
                "added_tokens") or []
        except (OSError, ValueError) as err:
            raise TokenizerFilesError(f"cannot read {directory / 'tokenizer.json'}: {err}") \
                from err
        tokens |= {_content(entry) for entry in added}
    for role in ROLES:
        tokens.add(_content(config.get(role)) or _content(special_map.get(role)))
    has_mask = bool(_content(config.get("mask_token")) or _content(special_map.get("mask_token")))
    return frozenset(t for t in tokens if t), has_mask
