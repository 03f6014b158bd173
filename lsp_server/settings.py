"""The `astdiffuse` settings: nested dataclasses with defaults, parsed from the client's camelCase
JSON (initializationOptions, workspace/configuration); a bad value is reported and its default kept.

Layers, lowest first: the defaults, `initializationOptions` (`{"astdiffuse": {...}}`), then the
answer to `workspace/configuration` for section `astdiffuse`. A key that is null or absent in a
layer keeps the value of the layer below it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

SECTION = "astdiffuse"
LOG_LEVELS = ("error", "warning", "info", "debug")
LOAD_MODEL = ("lazy", "start")
REMOTE_SCHEMES = ("tcp", "tls")
MAX_CANDIDATES = 16
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class EngineSettings:
    """Where the engine runs. The remote engine is a later issue: these are parsed and
    checked, and a set `url` makes requests fail with a clear message until it ships."""

    url: str | None = None  # tcp://HOST:PORT or tls://HOST:PORT of `python -m engine.serve`
    token: str | None = field(default=None, repr=False)  # the remote engine's token
    token_file: str | None = None  # a file holding the token (instead of `token`)


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from the `astdiffuse` section (camelCase on the wire)."""

    model: str | None = None  # model directory or cached hub id; None: the shipped default
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    steps: int | None = None  # denoising steps; None: half the masked tokens (engine default)
    temperature: float | None = None  # None: the model family's default (0.3 for ours)
    candidates: int = 3  # candidates a preview returns (and the engine ranks)
    context_tokens: int = 1024  # canvas budget around the spans, capped by the model
    engine: EngineSettings = field(default_factory=EngineSettings)
    log_level: str = "info"  # error | warning | info | debug (server log and logMessage)
    load_model: str = "lazy"  # lazy: on the first request; start: right after initialize
    trajectory: bool = False  # stream `astdiffuse/trajectory` notifications while denoising


@dataclass(frozen=True)
class ParsedSettings:
    """Settings plus the problems found on the way (each one a sentence for the user)."""

    settings: Settings
    problems: tuple[str, ...] = ()


def camel(name: str) -> str:
    """`context_tokens` -> `contextTokens`."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# -- value checks: value -> parsed value, or ValueError with what the key takes ---------------

def _optional_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _device(value: Any) -> str:
    if not isinstance(value, str) or not _DEVICE.match(value.strip().lower()):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return value.strip().lower()


def _positive_int(limit: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise ValueError(f"must be a whole number from 1 to {limit}")
        return value
    return check


def _temperature(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) \
            or not 0.0 <= float(value) <= 10.0:
        raise ValueError("must be a number from 0 (greedy) to 10")
    return float(value)


def _context_tokens(value: Any) -> int:
    value = _positive_int(1 << 20)(value)
    if value < 16:
        raise ValueError("must be at least 16 tokens")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value.strip().lower()
    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _engine_url(value: Any) -> str:
    text = _optional_text(value)
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in REMOTE_SCHEMES or not parts.hostname or port is None \
            or parts.path not in ("", "/"):
        raise ValueError("must look like tcp://HOST:PORT or tls://HOST:PORT")
    return text


def _token_file(value: Any) -> str:
    text = _optional_text(value)
    if not Path(text).expanduser().is_file():
        raise ValueError(f"names no file ({Path(text).expanduser()} does not exist)")
    return text


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "model": _optional_text,
    "device": _device,
    "steps": _positive_int(100_000),
    "temperature": _temperature,
    "candidates": _positive_int(MAX_CANDIDATES),
    "context_tokens": _context_tokens,
    "log_level": _choice(LOG_LEVELS),
    "load_model": _choice(LOAD_MODEL),
    "trajectory": _boolean,
}
_ENGINE_CHECKS: dict[str, Callable[[Any], Any]] = {
    "url": _engine_url,
    "token": _optional_text,
    "token_file": _token_file,
}


def section_of(options: Any) -> Any:
    """The `astdiffuse` section of initializationOptions / didChangeConfiguration settings:
    `{"astdiffuse": {...}}`; the section itself (known keys at the top) is taken as well."""
    if isinstance(options, dict):
        if SECTION in options:
            return options[SECTION]
        known = {camel(f.name) for f in fields(Settings)}
        if any(key in known or key.split(".")[0] in known for key in options):
            return options
    return None


def parse_settings(raw: Any, base: Settings | None = None) -> ParsedSettings:
    """One layer: `raw` (the section, camelCase, nested `engine` or dotted `engine.url` keys)
    over `base` (defaults when None). Unknown keys and bad values become problems; a bad value
    keeps `base`'s value."""
    base = base or Settings()
    if raw is None:
        return ParsedSettings(base)
    if not isinstance(raw, dict):
        return ParsedSettings(base, (f"the {SECTION} settings must be an object, not "
                                     f"{type(raw).__name__}; using the defaults",))
    problems: list[str] = []
    top = {camel(name): name for name in _CHECKS}
    engine_keys = {camel(name): name for name in _ENGINE_CHECKS}
    values: dict[str, Any] = {}
    engine_raw: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "engine":
            if value is None:
                continue
            if not isinstance(value, dict):
                problems.append(f"{SECTION}.engine must be an object")
                continue
            engine_raw.update(value)
        elif isinstance(key, str) and key.startswith("engine."):
            engine_raw[key.removeprefix("engine.")] = value
        elif key in top:
            if value is None:
                continue
            name = top[key]
            try:
                values[name] = _CHECKS[name](value)
            except ValueError as err:
                problems.append(f"{SECTION}.{key} = {_shown(key, value)} {err}")
        else:
            problems.append(f"unknown setting {SECTION}.{key} (known: "
                            f"{', '.join([*top, *('engine.' + k for k in engine_keys)])})")
    engine_values: dict[str, Any] = {}
    for key, value in engine_raw.items():
        if key not in engine_keys:
            problems.append(f"unknown setting {SECTION}.engine.{key} (known: "
                            f"{', '.join('engine.' + k for k in engine_keys)})")
            continue
        if value is None:
            continue
        name = engine_keys[key]
        try:
            engine_values[name] = _ENGINE_CHECKS[name](value)
        except ValueError as err:
            problems.append(f"{SECTION}.engine.{key} = {_shown(key, value)} {err}")
    engine = replace(base.engine, **engine_values)
    if engine.token is not None and engine.token_file is not None:
        problems.append(f"set {SECTION}.engine.token or {SECTION}.engine.tokenFile, not both; "
                        "using engine.token")
        engine = replace(engine, token_file=None)
    return ParsedSettings(replace(base, **values, engine=engine), tuple(problems))


def merge_layers(*layers: Any) -> ParsedSettings:
    """Each layer (a raw section or None) over the ones before it, starting from the defaults."""
    settings, problems = Settings(), []
    for raw in layers:
        parsed = parse_settings(raw, settings)
        settings = parsed.settings
        problems.extend(parsed.problems)
    return ParsedSettings(settings, tuple(problems))


def remote_engine_notice(settings: Settings) -> str | None:
    """The message for a set `engine.url`, which this version cannot use yet."""
    if settings.engine.url is None:
        return None
    return (f"{SECTION}.engine.url is set to {settings.engine.url}, but the remote engine is "
            "not available yet in this version of astdiffuse; remove the setting to run the "
            "model locally")


def model_key(settings: Settings) -> tuple:
    """What the loaded model depends on: a change of these reloads it."""
    return settings.model, settings.device


def _shown(key: str, value: Any) -> str:
    if "token" in key.lower() and "file" not in key.lower():
        return "<hidden>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
