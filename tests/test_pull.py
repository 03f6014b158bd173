"""`python -m engine pull` and `infill --download` against a local HTTP server standing in for
the Hugging Face hub (HF_ENDPOINT, tests/hub_server.py): the real huggingface_hub client in a
real subprocess, no mocks. Success with progress, an interrupted download finished, a missing
model and a refused token as clear errors, nothing downloaded unasked, offline use after."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.hub import PullError, resolve_name, verify_snapshot

from engine.benchmarks.published_layouts import make_checkpoint
from .hub_server import Hub, HubServer
from .paths import ROOT

REPO = "fredzzp/open-dcoder-0.5B"  # what the short name open-dcoder-0.5b stands for


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint("open-dcoder", tmp_path_factory.mktemp("hub") / "open-dcoder")


@pytest.fixture
def hub(checkpoint):
    hub = Hub()
    repo = hub.add_directory(REPO, checkpoint)
    # what a repository also holds and pull never fetches: its code and pickles
    repo.files["modeling_qwen2.py"] = b"raise SystemExit('never run')\n"
    repo.files["pytorch_model.bin"] = b"\x80\x04pickle"
    return hub


def cli(args, home, endpoint="http://127.0.0.1:9", offline=False, timeout=300):
    env = dict(os.environ, HF_HOME=str(home), HF_ENDPOINT=endpoint, HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="5",
               HF_HUB_DOWNLOAD_TIMEOUT="10")
    env.pop("HF_TOKEN", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def gets(hub, name):
    return sum(1 for method, path, _ in hub.requests
               if method == "GET" and path.endswith("/" + name))


def test_pull_downloads_with_progress_and_only_what_the_engine_reads(hub, checkpoint, tmp_path):
    with HubServer(hub) as url:
        result = cli(["pull", "open-dcoder-0.5b"], tmp_path, url)
    assert result.returncode == 0, result.stderr
    snapshot = Path(result.stdout.strip().splitlines()[0])
    assert "models--fredzzp--open-dcoder-0.5B" in str(snapshot)
    assert "100%" in result.stderr  # huggingface_hub's progress bar
    names = sorted(p.name for p in snapshot.iterdir())
    assert "modeling_qwen2.py" not in names and "pytorch_model.bin" not in names
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (snapshot / name).read_bytes() == (checkpoint / name).read_bytes()
    # the weights' blob is named by the SHA-256 the hub gave: pull checked it
    blob = Path(os.path.realpath(snapshot / "model.safetensors"))
    assert blob.name == hashlib.sha256((checkpoint / "model.safetensors").read_bytes()).hexdigest()


def test_a_cut_connection_is_retried_within_the_pull(hub, checkpoint, tmp_path):
    hub.cut["model.safetensors"] = [50_000, 1]
    with HubServer(hub) as url:
        result = cli(["pull", REPO], tmp_path, url)
    assert result.returncode == 0, result.stderr
    assert gets(hub, "model.safetensors") == 2  # cut once, fetched again
    snapshot = Path(result.stdout.strip().splitlines()[0])
    assert (snapshot / "model.safetensors").read_bytes() == \
        (checkpoint / "model.safetensors").read_bytes()


def test_an_interrupted_pull_continues_where_it_stopped(hub, checkpoint, tmp_path):
    hub.cut["model.safetensors"] = [50_000, 100]  # every try is cut: this pull fails
    with HubServer(hub) as url:
        failed = cli(["pull", REPO], tmp_path, url)
        assert failed.returncode == 2
        assert "error:" in failed.stderr and REPO in failed.stderr
        assert gets(hub, "config.json") == 1
        hub.cut.clear()
        again = cli(["pull", REPO], tmp_path, url)
    assert again.returncode == 0, again.stderr
    assert gets(hub, "config.json") == 1  # what was complete is not fetched again
    snapshot = Path(again.stdout.strip().splitlines()[0])
    assert (snapshot / "model.safetensors").read_bytes() == \
        (checkpoint / "model.safetensors").read_bytes()


def test_missing_model_refused_token_and_offline_are_clear_errors(hub, tmp_path):
    hub.repos[REPO].token = "right-token"
    with HubServer(hub) as url:
        missing = cli(["pull", "nobody/no-such-model"], tmp_path, url)
        refused = cli(["pull", REPO, "--token", "wrong-token"], tmp_path, url)
        allowed = cli(["pull", REPO, "--token", "right-token"], tmp_path, url)
    assert missing.returncode == 2
    assert "no model nobody/no-such-model on http://127.0.0.1" in missing.stderr
    assert refused.returncode == 2 and "refused the token" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr
    offline = cli(["pull", REPO], tmp_path / "other", offline=True)
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr
    unreachable = cli(["pull", REPO], tmp_path / "other")  # nothing listens on port 9
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr
    bad = cli(["pull", "not a name"], tmp_path)
    assert bad.returncode == 2 and "open-dcoder-0.5b" in bad.stderr


def test_nothing_downloads_unasked_then_download_then_offline(hub, tmp_path):
    args = ["infill", "examples/sample.py", "--lines", "24:24", "--model", "open-dcoder-0.5b",
            "--steps", "2", "--candidates", "1", "--json", "--device", "cpu"]
    with HubServer(hub) as url:
        unasked = cli(args, tmp_path, url)
        assert unasked.returncode == 2
        assert "not downloaded" in unasked.stderr and "engine pull open-dcoder-0.5b" in \
            unasked.stderr
        assert not any(path.startswith("/fredzzp") for _, path, _ in hub.requests)
        downloaded = cli([*args, "--download"], tmp_path, url)
        assert downloaded.returncode in (0, 1), downloaded.stderr
    offline = cli(args, tmp_path, offline=True)  # the server is gone; the cache is enough
    assert offline.returncode in (0, 1), offline.stderr
    assert '"candidates"' in offline.stdout


def test_short_names_and_a_corrupted_blob(tmp_path):
    assert resolve_name("open-dcoder-0.5b") == REPO
    assert resolve_name("dream-coder-7b-instruct") == "Dream-org/Dream-Coder-v0-Instruct-7B"
    assert resolve_name("org/any-model") == "org/any-model"
    with pytest.raises(PullError, match="short name"):
        resolve_name("no-such-short-name")
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshot"
    blobs.mkdir()
    snapshot.mkdir()
    data = b"weights"
    blob = blobs / hashlib.sha256(b"other weights").hexdigest()
    blob.write_bytes(data)
    (snapshot / "model.safetensors").symlink_to(blob)
    with pytest.raises(PullError, match="does not match the hub's SHA-256"):
        verify_snapshot(snapshot)
    assert not blob.exists()  # deleted: the next pull fetches it again


@pytest.mark.e2e
def test_the_language_server_downloads_only_with_allow_download(hub, tmp_path):
    """astdiffuse.model names a published model by its short name: without allowDownload the
    server says how to get it and fetches nothing; with it, the server pulls and infills."""
    from pygls.exceptions import JsonRpcException

    from .lsp_support import BUFFER, TOTAL_LINE, Session, cursor

    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    with HubServer(hub) as url:
        for allow in (False, True):
            session = Session(tmp_path / f"server-{allow}.log", init_options={"astdiffuse": {
                "model": "open-dcoder-0.5b", "allowDownload": allow, "device": "cpu",
                "steps": 2, "candidates": 1}})
            try:
                session.start(env={**env, "HF_ENDPOINT": url})
                doc = (tmp_path / "buffer.py").as_uri()
                session.open(doc, BUFFER)
                arguments = {"uri": doc, "apply": False,
                             "ranges": [cursor(BUFFER, TOTAL_LINE, "count")]}
                try:
                    result = session.execute(arguments, timeout=180)
                except JsonRpcException as err:
                    if not allow:
                        assert "not downloaded" in err.message
                        assert "allowDownload" in err.message
                        assert not any(p.startswith("/fredzzp") for _, p, _ in hub.requests)
                        continue
                    assert "no valid infill" in err.message, err.message
                    result = err.data
                assert allow and result["candidates"]
                assert gets(hub, "model.safetensors") == 1
            finally:
                assert session.stop() == 0
