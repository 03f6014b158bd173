"""lsp_server.settings: camelCase parsing into nested dataclasses, layering, and every bad
value reported (not raised) with its default kept."""

from dataclasses import replace

import pytest

from lsp_server.settings import (EngineSettings, Settings, camel, engine_token, merge_layers,
                                 model_key, parse_settings, section_of)


def test_defaults():
    parsed = parse_settings(None)
    assert parsed.settings == Settings() and parsed.problems == ()
    assert Settings().engine == EngineSettings() and Settings().load_model == "lazy"
    assert Settings().trajectory is False and Settings().model is None


def test_camel_case_keys_into_nested_dataclasses(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret")
    parsed = parse_settings({
        "model": "/models/small", "device": "CUDA:1", "steps": 12, "temperature": 0,
        "candidates": 5, "contextTokens": 512, "logLevel": "DEBUG", "loadModel": "start",
        "trajectory": True,
        "engine": {"url": "astdiffuse://gpu-box:7878", "tokenFile": str(token_file),
                   "connectTimeout": 2},
    })
    assert parsed.problems == ()
    s = parsed.settings
    assert (s.model, s.device, s.steps, s.temperature, s.candidates, s.context_tokens) == (
        "/models/small", "cuda:1", 12, 0.0, 5, 512)
    assert (s.log_level, s.load_model, s.trajectory) == ("debug", "start", True)
    assert s.engine == EngineSettings(url="astdiffuse://gpu-box:7878", token_file=str(token_file),
                                     connect_timeout=2.0)
    assert camel("context_tokens") == "contextTokens" and camel("model") == "model"


def test_dotted_engine_keys_as_vscode_may_send_them():
    parsed = parse_settings({"engine.url": "astdiffuse+tls://10.0.0.2:9000",
                             "engine.token": "abc"})
    assert parsed.problems == ()
    assert parsed.settings.engine.url == "astdiffuse+tls://10.0.0.2:9000"
    assert parsed.settings.engine.token == "abc"
    assert "abc" not in repr(parsed.settings)  # a token never reaches a log line


@pytest.mark.parametrize("key, value, words", [
    ("steps", "many", "whole number"),
    ("steps", 0, "from 1"),
    ("steps", True, "whole number"),
    ("temperature", -1, "from 0"),
    ("temperature", "hot", "number"),
    ("candidates", 99, "from 1 to 16"),
    ("contextTokens", 8, "at least 16"),
    ("device", "tpu", "auto, cpu, cuda"),
    ("model", "", "non-empty"),
    ("logLevel", "loud", "error, warning, info, debug"),
    ("loadModel", "eager", "lazy, start"),
    ("trajectory", "yes", "true or false"),
])
def test_a_bad_value_is_reported_and_its_default_kept(key, value, words):
    parsed = parse_settings({key: value, "candidates": 2} if key != "candidates"
                            else {key: value, "steps": 7})
    [problem] = parsed.problems
    assert f"astdiffuse.{key}" in problem and words in problem
    good = parsed.settings
    assert good == (Settings(candidates=2) if key != "candidates" else Settings(steps=7))


@pytest.mark.parametrize("engine, words", [
    ({"url": "http://gpu:80"}, "astdiffuse://HOST:PORT"),
    ({"url": "astdiffuse://"}, "astdiffuse://HOST:PORT"),
    ({"url": "astdiffuse://gpu:99999"}, "astdiffuse://HOST:PORT"),
    ({"url": "astdiffuse://gpu:7341/path"}, "astdiffuse://HOST:PORT"),
    ({"tokenFile": "/no/such/token"}, "does not exist"),
    ({"tlsCaFile": "/no/such/ca.pem"}, "does not exist"),
    ({"connectTimeout": 0}, "seconds"),
    ({"colour": "blue"}, "unknown setting astdiffuse.engine.colour"),
])
def test_bad_engine_settings(engine, words):
    parsed = parse_settings({"engine": engine})
    [problem] = parsed.problems
    assert words in problem
    assert parsed.settings.engine == EngineSettings()


def test_a_token_value_is_never_echoed():
    parsed = parse_settings({"engine": {"token": 12345}})
    [problem] = parsed.problems
    assert "12345" not in problem and "<hidden>" in problem


def test_token_and_token_file_together(tmp_path):
    (tmp_path / "t").write_text("x")
    parsed = parse_settings({"engine": {"token": "a", "tokenFile": str(tmp_path / "t")}})
    [problem] = parsed.problems
    assert "not both" in problem
    assert parsed.settings.engine.token == "a" and parsed.settings.engine.token_file is None


def test_unknown_keys_and_wrong_shapes():
    parsed = parse_settings({"modle": "x", "steps": 3})
    [problem] = parsed.problems
    assert "unknown setting astdiffuse.modle" in problem and "contextTokens" in problem
    assert parsed.settings.steps == 3
    parsed = parse_settings(["not", "an", "object"])
    assert parsed.settings == Settings() and "must be an object" in parsed.problems[0]
    assert "must be an object" in parse_settings({"engine": 3}).problems[0]


def test_layers_null_keeps_the_lower_layer():
    init = {"model": "/m", "device": "cpu", "steps": 4}
    configuration = {"model": None, "steps": 9, "engine": None, "trajectory": True}
    parsed = merge_layers(init, configuration)
    assert parsed.problems == ()
    assert (parsed.settings.model, parsed.settings.device, parsed.settings.steps) == (
        "/m", "cpu", 9)
    assert parsed.settings.trajectory is True
    # a client that answers null: the initialization options (then the defaults) hold
    assert merge_layers(init, None).settings == merge_layers(init).settings
    assert merge_layers(None, None).settings == Settings()
    # problems of every layer are kept, and a bad value falls back to the layer below
    parsed = merge_layers({"steps": 4}, {"steps": -1})
    assert parsed.settings.steps == 4 and len(parsed.problems) == 1


def test_section_of_initialization_options():
    assert section_of({"astdiffuse": {"model": "/m"}}) == {"model": "/m"}
    assert section_of({"model": "/m"}) == {"model": "/m"}  # the section itself
    assert section_of({"engine.url": "astdiffuse://a:1"}) == {"engine.url": "astdiffuse://a:1"}
    assert section_of({"otherServer": {}}) is None
    assert section_of(None) is None and section_of("text") is None


def test_model_key_and_the_remote_token(tmp_path, monkeypatch):
    assert model_key(Settings(model="a")) != model_key(Settings(model="b"))
    assert model_key(Settings(steps=3)) == model_key(Settings())
    remote = parse_settings({"engine": {"url": "astdiffuse://gpu:1"}}).settings
    assert model_key(remote)[0] == "remote"
    monkeypatch.delenv("ASTDIFFUSE_TOKEN", raising=False)
    assert engine_token(remote.engine) is None
    monkeypatch.setenv("ASTDIFFUSE_TOKEN", " from-env ")
    assert engine_token(remote.engine) == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert engine_token(replace(remote.engine, token_file=str(token_file))) == "from-file"
    assert engine_token(replace(remote.engine, token="from-setting",
                                token_file=str(token_file))) == "from-setting"
