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
import os

SECTION = "astdiffuse"
LOG_LEVELS = ("error", "warning", "info", "debug")
LOAD_MODEL = ("lazy", "start")
TOKEN_ENV = "ASTDIFFUSE_TOKEN"  # the remote engine's token when no setting gives one
MAX_CANDIDATES = 16
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class EngineSettings:
    """Where the engine runs: a set `url` sends every infill to `python -m engine.serve`
    there instead of loading a model in this process (docs/remote.md)."""

    url: str | None = None  # astdiffuse://HOST:PORT or astdiffuse+tls://HOST:PORT
    token: str | None = field(default=None, repr=False)  # the remote engine's token
    token_file: str | None = None  # a file holding the token (instead of `token`)
    tls_ca_file: str | None = None  # PEM CA bundle to trust for astdiffuse+tls (a self-signed
    #   server certificate); None: the system's trust store
    connect_timeout: float = 5.0  # seconds to connect and say hello before giving up


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from the `astdiffuse` section (camelCase on the wire)."""

    model: str | None = None  # model directory, or a published model's short name / hub id;
    #   None: the shipped default
    allow_download: bool = False  # download `model` from the hub if it is not here yet
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
    from engine.serve.protocol import parse_url

    text = _optional_text(value)
    try:
        parse_url(text)
    except ValueError:
        raise ValueError("must look like astdiffuse://HOST:PORT or "
                         "astdiffuse+tls://HOST:PORT") from None
    return text


def _existing_file(value: Any) -> str:
    text = _optional_text(value)
    if not Path(text).expanduser().is_file():
        raise ValueError(f"names no file ({Path(text).expanduser()} does not exist)")
    return text


def _seconds(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) \
            or not 0.1 <= float(value) <= 600:
        raise ValueError("must be a number of seconds from 0.1 to 600")
    return float(value)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "model": _optional_text,
    "allow_download": _boolean,
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
    "token_file": _existing_file,
    "tls_ca_file": _existing_file,
    "connect_timeout": _seconds,
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


def engine_token(engine: EngineSettings) -> str | None:
    """The remote engine's token: `engine.token`, else the contents of `engine.tokenFile`,
    else $ASTDIFFUSE_TOKEN of the server's environment, else None. OSError when the file
    cannot be read."""
    if engine.token is not None:
        return engine.token
    if engine.token_file is not None:
        text = Path(engine.token_file).expanduser().read_text(encoding="utf-8").strip()
        return text or None
    return os.environ.get(TOKEN_ENV, "").strip() or None


def model_key(settings: Settings) -> tuple:
    """What the loaded engine depends on: a change of these reloads the model (or reconnects
    to the remote engine)."""
    engine = settings.engine
    if engine.url is not None:
        return ("remote", engine.url, engine.token, engine.token_file, engine.tls_ca_file,
                engine.connect_timeout)
    return ("local", settings.model, settings.device, settings.allow_download)


def _shown(key: str, value: Any) -> str:
    if "token" in key.lower() and "file" not in key.lower():
        return "<hidden>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
