"""training.pypi_corpus against wheels built here and served from a local directory
(`pip download --no-index --find-links`): the real pip, no network. Permissive pure-Python
packages are unpacked and recorded with their licence; copyleft, unknown and compiled ones are
left out with the reason; a manifest fetches the same versions again."""

import json
import zipfile
from pathlib import Path

import pytest

from training.corpus import CorpusConfig, build_corpus
from training.pypi_corpus import (MANIFEST_NAME, PyPICorpusError, build, license_of, main,
                                  requests_from_manifest)


def wheel(directory: Path, name: str, version: str, metadata: str, tag: str = "py3-none-any",
          files: dict | None = None) -> Path:
    path = directory / f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{info}/METADATA",
                         f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n{metadata}")
        archive.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: "
                                          f"{tag}\n")
        archive.writestr(f"{info}/RECORD", "")
        for file, text in (files or {f"{name}/__init__.py": f"VALUE = {version!r}\n"}).items():
            archive.writestr(file, text)
    return path


@pytest.fixture
def index(tmp_path):
    links = tmp_path / "index"
    links.mkdir()
    wheel(links, "mitpkg", "1.2.0", "License-Expression: MIT\n",
          files={f"mitpkg/mod{i}.py": f"def f{i}():\n    return {i}\n" for i in range(30)})
    wheel(links, "mitpkg", "1.1.0", "License-Expression: MIT\n")
    wheel(links, "gplpkg", "2.0", "License-Expression: GPL-3.0-or-later\n")
    wheel(links, "dualpkg", "0.1", "License-Expression: MIT OR GPL-2.0-only\n")
    wheel(links, "classicpkg", "3.0", "Classifier: License :: OSI Approved :: BSD License\n")
    wheel(links, "cpkg", "1.0", "License-Expression: MIT\n", tag="cp311-cp311-linux_x86_64")
    return ("--no-index", f"--find-links={links}")


def test_licences_from_metadata():
    assert license_of("License-Expression: Apache-2.0\n") == ("Apache-2.0",
                                                              "License-Expression", True)
    assert license_of("License-Expression: MIT AND GPL-3.0-only\n")[2] is False
    assert license_of("License-Expression: (MIT OR GPL-3.0-only)\n")[2] is True
    assert license_of("Classifier: License :: OSI Approved :: MIT License\n")[:2] == (
        "MIT", "classifier")
    assert license_of("Classifier: License :: OSI Approved :: GNU General Public License "
                      "v3 (GPLv3)\n")[2] is False
    assert license_of("License: BSD-3-Clause\n") == ("BSD-3-Clause", "License", True)
    assert license_of("Summary: no licence at all\n") == ("unknown", "License", False)
    # the License field is free text
    assert license_of("License: Apache License, Version 2.0\n")[::2] == ("Apache-2.0", True)
    assert license_of("License: BSD\n")[::2] == ("BSD", True)
    assert license_of("License: LGPL\n")[2] is False


def test_fetch_keeps_permissive_pure_python_only(index, tmp_path):
    out = tmp_path / "corpus"
    manifest = build(["mitpkg", "gplpkg", "dualpkg", "classicpkg", "cpkg", "nosuchpkg"], out,
                     index, progress=False)
    packages = {p["request"]: p for p in manifest["packages"]}
    mit = packages["mitpkg"]
    assert mit["kept"] and (mit["name"], mit["version"], mit["license"]) == ("mitpkg", "1.2.0",
                                                                            "MIT")
    assert mit["files"] == 30 and len(mit["sha256"]) == 64
    assert packages["dualpkg"]["kept"] and packages["classicpkg"]["license"] == "BSD"
    assert not packages["gplpkg"]["kept"] and "GPL-3.0" in packages["gplpkg"]["reason"]
    assert not packages["cpkg"]["kept"] and "pure-Python" in packages["cpkg"]["reason"]
    assert not packages["nosuchpkg"]["kept"]
    assert not (out / "src" / "gplpkg").exists() and (out / "src" / "mitpkg" / "mod3.py").is_file()
    assert json.loads((out / MANIFEST_NAME).read_text())["summary"]["kept"] == 3
    # the corpus split over the tree: a file is in exactly one split, decided by its path
    corpus = build_corpus(CorpusConfig(roots=(str(out / "src"),)))
    splits = {name: {f.relative_path for f in corpus.split(name)}
              for name in ("train", "validation", "test")}
    assert not splits["train"] & splits["test"] and splits["train"]
    with pytest.raises(PyPICorpusError, match="not empty"):
        build(["mitpkg"], out, index, progress=False)


def test_a_manifest_fetches_the_same_versions(index, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["--out", str(first), "--packages", "mitpkg==1.1.0", "gplpkg", "--quiet",
                 *[f"--pip-arg={a}" for a in index]]) == 0
    assert "1 of 2 packages kept" in capsys.readouterr().out
    assert requests_from_manifest(first / MANIFEST_NAME) == ["mitpkg==1.1.0"]
    again = tmp_path / "again"
    assert main(["--out", str(again), "--from-manifest", str(first / MANIFEST_NAME), "--quiet",
                 *[f"--pip-arg={a}" for a in index]]) == 0
    assert (again / "src" / "mitpkg" / "__init__.py").read_text() == "VALUE = '1.1.0'\n"
    assert main(["--out", str(tmp_path / "x"), "--from-manifest", str(tmp_path / "none")]) == 2
