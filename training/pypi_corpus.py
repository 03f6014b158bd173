"""More code to train on than the standard library: permissively licensed, pure-Python packages
from PyPI, fetched as wheels and unpacked into one source tree for `training.corpus --root`.

Each package's wheel is downloaded with pip (no dependencies, pure-Python wheels only: the tag
`none-any`), its licence read from the wheel's METADATA (License-Expression, else the OSI
classifiers, else the License field) and kept only when it is on `PERMISSIVE`. The manifest
(`pypi-manifest.json` in the output directory) records every package: name, version, licence
and where it was read, the wheel's SHA-256, files and bytes unpacked, or why it was left out.
`--from-manifest` fetches exactly the versions a manifest records, so a corpus can be rebuilt.
The train / validation / test split stays `training.corpus`'s (a file's relative path decides
it), so the test split's files never reach training whatever the package list.

    python -m training.pypi_corpus --out ~/astdiffuse-data/pypi            # the default list
    python -m training.corpus --root ~/astdiffuse-data/pypi/src --root STDLIB ...
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import AstdiffuseError

MANIFEST_NAME = "pypi-manifest.json"
MANIFEST_FORMAT = "astdiffuse-pypi-corpus"
# SPDX ids (License-Expression) and OSI classifier names counted as permissive.
PERMISSIVE = {
    "MIT": "MIT", "MIT-0": "MIT-0", "BSD-2-Clause": "BSD-2-Clause",
    "BSD-3-Clause": "BSD-3-Clause", "Apache-2.0": "Apache-2.0", "ISC": "ISC",
    "PSF-2.0": "PSF-2.0", "Python-2.0": "PSF-2.0", "Unlicense": "Unlicense", "0BSD": "0BSD",
    "Zlib": "Zlib", "CC0-1.0": "CC0-1.0",
    "MIT License": "MIT", "BSD License": "BSD", "Apache Software License": "Apache-2.0",
    "ISC License (ISCL)": "ISC", "Python Software Foundation License": "PSF-2.0",
    "The Unlicense (Unlicense)": "Unlicense", "zlib/libpng License": "Zlib",
    "MIT No Attribution License (MIT-0)": "MIT-0",
}
# A first list of permissive pure-Python packages with a lot of ordinary Python in them;
# `--packages` replaces it. Whether each really is permissive and pure is checked per wheel.
DEFAULT_PACKAGES = (
    "django", "sympy", "networkx", "twisted", "pygments", "sphinx", "setuptools", "pip",
    "mypy", "jedi", "parso", "ipython", "prompt-toolkit", "dask", "distributed", "xarray",
    "celery", "kombu", "redis", "openpyxl", "sqlparse", "tabulate", "pexpect", "ptyprocess",
    "wcwidth", "colorama", "click", "typer", "rich", "textual", "flask", "werkzeug", "jinja2",
    "itsdangerous", "blinker", "requests", "urllib3", "idna", "httpx", "httpcore", "h11",
    "anyio", "sniffio", "starlette", "fastapi", "pydantic", "attrs", "cattrs", "marshmallow",
    "packaging", "pyparsing", "python-dateutil", "pytz", "tomli", "tomlkit",
    "typing-extensions", "more-itertools", "boltons", "toolz", "cachetools", "tenacity",
    "pluggy", "pytest", "iniconfig", "flake8", "pycodestyle", "pyflakes", "mccabe", "isort",
    "black", "virtualenv", "filelock", "platformdirs", "distlib", "tox", "nox", "pre-commit",
    "build", "pyproject-hooks", "wheel", "zipp", "importlib-metadata", "alembic", "mako",
    "sqlalchemy", "peewee", "bottle", "scrapy", "beautifulsoup4", "soupsieve", "html5lib",
    "requests-toolbelt", "oauthlib", "requests-oauthlib", "pyasn1", "rsa", "google-auth",
    "docker", "boto3", "botocore", "s3transfer", "jmespath", "nltk", "jsonschema",
    "referencing", "rpds-py", "arrow", "pendulum", "humanize", "babel", "markdown",
    "mistune", "nbformat", "traitlets", "jupyter-core", "tornado", "gunicorn", "uvicorn",
    "hypercorn", "websockets", "aiofiles", "asgiref", "simplejson", "ujson", "xmltodict",
    "pycparser", "ply", "lark", "astor", "asttokens", "executing", "pure-eval",
    "stack-data", "decorator", "wrapt", "deprecated", "six", "future", "fsspec", "s3fs",
    "gcsfs", "pyarrow-hotfix", "sortedcontainers", "bidict", "pyrsistent", "immutables",
    "structlog", "loguru", "python-json-logger", "coloredlogs", "humanfriendly", "tqdm",
    "schedule", "apscheduler", "croniter", "watchdog", "pathspec", "glob2", "send2trash",
)
_PIP_PURE = ("--no-deps", "--only-binary=:all:", "--platform", "any", "--implementation", "py",
             "--abi", "none")


class PyPICorpusError(AstdiffuseError):
    """The package list or the output directory cannot be used."""


@dataclass
class PackageRecord:
    """One package of the manifest: what was fetched, its licence, what it gave."""

    request: str  # as asked (name or name==version)
    name: str = ""
    version: str = ""
    license: str = ""  # the permissive licence it was kept under, or what was found
    license_source: str = ""  # License-Expression | classifier | License
    wheel: str = ""
    sha256: str = ""
    files: int = 0
    bytes: int = 0
    kept: bool = False
    reason: str = ""  # why it was left out


def license_of(metadata: str) -> tuple[str, str, bool]:
    """(licence, where it was read, permissive?) from a wheel's METADATA text. A licence
    expression is permissive when every part of it is (an OR needs one)."""
    message = email.parser.Parser().parsestr(metadata)
    expression = message.get("License-Expression")
    if expression:
        options = [part.strip("() ") for part in re.split(r"\s+OR\s+", expression)]
        for option in options:
            parts = [p.strip("() ") for p in re.split(r"\s+AND\s+", option)]
            if all(p in PERMISSIVE for p in parts):
                return " AND ".join(PERMISSIVE[p] for p in parts), "License-Expression", True
        return expression, "License-Expression", False
    classifiers = [c.split("::")[-1].strip() for c in message.get_all("Classifier") or []
                   if c.startswith("License ::")]
    known = [PERMISSIVE[c] for c in classifiers if c in PERMISSIVE]
    if classifiers:
        # several classifiers: a choice of licences; one permissive one is enough
        if known:
            return known[0], "classifier", True
        return "; ".join(classifiers), "classifier", False
    text = (message.get("License") or "").strip()
    first = text.splitlines()[0].strip() if text else ""
    for key, spdx in PERMISSIVE.items():
        if first in (key, f"{key} License") or first.upper() == key.upper():
            return spdx, "License", True
    short = _LICENSE_WORDS.sub(" ", first.lower()).strip()
    short = re.sub(r"\s+", " ", short)
    if short in _FREE_TEXT:
        return _FREE_TEXT[short], "License", True
    return first or "unknown", "License", False


# The License field is free text: common spellings of the permissive licences, lowered, with
# "license", "version", "the" and punctuation taken out.
_LICENSE_WORDS = re.compile(r"\b(the|license|licence|version|v)\b|[^a-z0-9. ]")
_FREE_TEXT = {"mit": "MIT", "bsd": "BSD", "new bsd": "BSD-3-Clause", "bsd 3 clause": "BSD-3-Clause",
              "3 clause bsd": "BSD-3-Clause", "bsd 2 clause": "BSD-2-Clause",
              "simplified bsd": "BSD-2-Clause", "apache 2.0": "Apache-2.0",
              "apache 2": "Apache-2.0", "apache": "Apache-2.0", "apache software": "Apache-2.0",
              "psf": "PSF-2.0", "python software foundation": "PSF-2.0", "isc": "ISC",
              "unlicense": "Unlicense", "zlib": "Zlib"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def fetch_package(request: str, out: Path, pip_args: tuple[str, ...] = ()) -> PackageRecord:
    """Download `request`'s pure-Python wheel into out/wheels, and unpack its .py files into
    out/src when its licence is permissive."""
    record = PackageRecord(request)
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    before = set(wheels.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "download", request, *_PIP_PURE, "--python-version",
               f"{sys.version_info.major}.{sys.version_info.minor}", "-d", str(wheels),
               "--quiet", "--disable-pip-version-check", *pip_args]
    result = subprocess.run(command, capture_output=True, text=True)
    name = _normal(re.split(r"[=<>!~ ]", request, maxsplit=1)[0])
    found = sorted(set(wheels.glob("*.whl")) - before) or sorted(
        w for w in wheels.glob("*.whl") if _normal(w.name.split("-")[0]) == name)
    if result.returncode != 0 or not found:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        record.reason = ("no pure-Python wheel (none-any) on the index"
                         if "No matching distribution" in result.stderr
                         else (errors[-1] if errors else f"pip exited {result.returncode}"))
        return record
    wheel = found[-1]
    record.wheel = wheel.name
    record.sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with zipfile.ZipFile(wheel) as archive:
        metadata = next((n for n in archive.namelist()
                         if n.endswith(".dist-info/METADATA")), None)
        if metadata is None:
            record.reason = "the wheel has no METADATA"
            return record
        message = archive.read(metadata).decode("utf-8", errors="replace")
        parsed = email.parser.Parser().parsestr(message)
        record.name, record.version = parsed.get("Name", ""), parsed.get("Version", "")
        record.license, record.license_source, permissive = license_of(message)
        if not permissive:
            record.reason = f"licence not on the permissive list: {record.license}"
            return record
        src = out / "src"
        for member in archive.infolist():
            path = member.filename
            if not path.endswith(".py") or ".dist-info/" in path or ".data/" in path:
                continue
            target = (src / path).resolve()
            if src.resolve() not in target.parents:  # no path escapes the tree
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            data = archive.read(member)
            target.write_bytes(data)
            record.files += 1
            record.bytes += len(data)
    record.kept = record.files > 0
    if not record.kept:
        record.reason = "no .py files in the wheel"
    return record


def build(requests: list[str], out: str | Path, pip_args: tuple[str, ...] = (),
          progress: bool = True) -> dict:
    """Fetch every request into `out` and write the manifest there; returns it."""
    out = Path(out).expanduser()
    if (out / "src").exists() and any((out / "src").iterdir()):
        raise PyPICorpusError(f"{out / 'src'} is not empty: use a new --out directory (a corpus "
                              "tree mixes no two package lists)")
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    records = []
    for index, request in enumerate(requests, 1):
        record = fetch_package(request, out, pip_args)
        records.append(record)
        if progress:
            state = f"{record.files} files, {record.bytes:,} bytes, {record.license}" \
                if record.kept else f"left out: {record.reason}"
            print(f"[{index}/{len(requests)}] {request}: {state}", file=sys.stderr, flush=True)
    kept = [r for r in records if r.kept]
    manifest = {
        "format": MANIFEST_FORMAT, "version": 1,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "summary": {"packages": len(records), "kept": len(kept),
                    "files": sum(r.files for r in kept), "bytes": sum(r.bytes for r in kept),
                    "seconds": round(time.monotonic() - began, 1)},
        "packages": [asdict(r) for r in records],
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def requests_from_manifest(path: str | Path) -> list[str]:
    """name==version of every package a manifest kept (to fetch the same corpus again)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PyPICorpusError(f"cannot read the manifest {path}: {err}") from err
    if data.get("format") != MANIFEST_FORMAT:
        raise PyPICorpusError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    return [f"{p['name']}=={p['version']}" for p in data["packages"] if p.get("kept")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pypi_corpus",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="where wheels/, src/ and pypi-manifest.json go (outside the "
                             "repository)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--packages", nargs="+", metavar="NAME[==VERSION]",
                        help="the packages to fetch (default: a built-in list of "
                             f"{len(DEFAULT_PACKAGES)})")
    source.add_argument("--from-manifest", metavar="FILE",
                        help="fetch exactly the versions a manifest kept")
    parser.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                        help="passed to pip download (e.g. --pip-arg=--index-url=URL)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    try:
        requests = requests_from_manifest(args.from_manifest) if args.from_manifest \
            else list(args.packages or DEFAULT_PACKAGES)
        manifest = build(requests, args.out, tuple(args.pip_arg), progress=not args.quiet)
    except AstdiffuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = manifest["summary"]
    print(f"{summary['kept']} of {summary['packages']} packages kept: {summary['files']:,} "
          f"files, {summary['bytes']:,} bytes; manifest {Path(args.out) / MANIFEST_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
