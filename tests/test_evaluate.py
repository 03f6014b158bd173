"""The infill evaluation harness: the benchmark format and its errors, the metrics on fixed
completions, the benchmark builder, that no reference middle reaches the model, and the CLI run
as a subprocess with a real tiny model on a gzip benchmark with execution tests."""

import gzip
import json
import subprocess
import sys

import pytest
import torch

import engine.infill.engine as engine_module
import engine.model as em
from engine.infill import InfillEngine, InfillTokenizer
from engine.splits import split_of
from engine.tokens import load_tokenizer
from training.corpus import CorpusConfig
from training.evaluate import (METRICS, BenchmarkFormatError, BuildConfig, EvalSettings,
                               InfillTask, build_benchmark, evaluate, normalize_middle,
                               read_tasks, score_completion, summarize, write_tasks)
from training.evaluate import cli, harness
from training.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer

from .paths import EXAMPLES, ROOT

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ADD = InfillTask(task_id="Toy/add", prompt="def add(a, b):\n", canonical_solution=
                 "    return a + b\n", suffix="", entry_point="add",
                 test="def check(candidate):\n    assert candidate(2, 3) == 5\n")
EVEN = InfillTask(task_id="Toy/even", prompt="def is_even(n):\n    r = ",
                  canonical_solution="n % 2 == 0", suffix="\n    return r\n",
                  entry_point="is_even",
                  test="def check(candidate):\n    assert candidate(4) and not candidate(3)\n")
# a built-style task with a distinctive middle and no test
SECRET = InfillTask(task_id="python/toy.py@40-70", prompt="import os\n\n\ndef f(path):\n    ",
                    canonical_solution="zebra_quokka_total = 918273 + 1",
                    suffix="\n    return os.path.join(path, 'x')\n", kind="statements",
                    mode="node", start_byte=40, end_byte=70)
TASKS = [ADD, EVEN, SECRET]


# --- the format ------------------------------------------------------------------------------

def test_plain_and_gzip_are_told_by_their_bytes(tmp_path):
    plain = write_tasks(tmp_path / "set.jsonl", TASKS)
    packed = tmp_path / "packed.bin"  # a gzip file whose name does not say so
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert [t.to_dict() for t in read_tasks(plain)] == [t.to_dict() for t in TASKS]
    assert [t.to_dict() for t in read_tasks(packed)] == [t.to_dict() for t in TASKS]
    assert write_tasks(tmp_path / "set.jsonl.gz", TASKS).read_bytes()[:2] == b"\x1f\x8b"
    assert read_tasks(tmp_path / "set.jsonl.gz")[2].kind == "statements"
    assert read_tasks(packed)[0].has_test and not read_tasks(packed)[2].has_test


@pytest.mark.parametrize("lines, message", [
    (['{"task_id": "a", "prompt": "", "suffix": ""}'], r"set.jsonl:1: missing field\(s\) "
                                                       "canonical_solution"),
    (['', '{"task_id": "a", "prompt": "", "suffix": "", "canonical_solution": "x"}', '{oops'],
     "set.jsonl:3: not valid JSON"),
    (['[1, 2]'], "set.jsonl:1: expected a JSON object"),
    (['{"task_id": "a", "prompt": 3, "suffix": "", "canonical_solution": ""}'],
     "set.jsonl:1: field prompt must be a string"),
    (['{"task_id": "a", "prompt": "", "suffix": "", "canonical_solution": ""}'] * 2,
     "set.jsonl:2: task_id 'a' repeats line 1"),
    ([], "holds no task"),
])
def test_malformed_lines_name_the_file_and_line(tmp_path, lines, message):
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=message):
        read_tasks(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="cannot read"):
        read_tasks(tmp_path / "none.jsonl")
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b" + b"not gzip at all")
    with pytest.raises(BenchmarkFormatError, match="not a valid gzip"):
        read_tasks(broken)


def test_the_cli_says_what_is_wrong_and_exits_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "set.jsonl"
    path.write_text('{"task_id": "a", "prompt": "", "suffix": ""}\n', encoding="utf-8")
    assert cli.main(["--benchmark", str(path), "--quiet"]) == 2
    assert "set.jsonl:1: missing field" in capsys.readouterr().err
    good = write_tasks(tmp_path / "good.jsonl", TASKS)
    monkeypatch.setattr(engine_module, "DEFAULT_MODEL_DIR", tmp_path / "no-model")
    assert cli.main(["--benchmark", str(good), "--quiet", "--device", "cpu"]) == 2
    assert "no default model is installed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--benchmark", str(good), "--plot-steps", "2,4"])
    assert exit_.value.code == 2


# --- metrics -----------------------------------------------------------------------------------

def test_normalization_rule():
    assert normalize_middle("  x = 1  \n\n\n    y = 2\n") == "x = 1\ny = 2"
    assert normalize_middle("\n\t\n") == ""


def test_metrics_on_fixed_completions():
    right = [score_completion(ADD, "    return a + b\n"),  # as-is
             score_completion(EVEN, "  n % 2 == 0  "),  # right after normalization
             score_completion(SECRET, "")]  # empty: the program still parses
    assert [s.passed for s in right] == [True, True, None]
    assert summarize(right) == {
        "exact_match": 0.3333, "exact_match_normalized": 0.6667, "syntax_valid": 1.0,
        "nonempty_and_parses": 0.6667, "pass@1": 1.0, "python_compiles": 1.0, "n": 3,
        "n_with_tests": 2,
        "by_kind": {"statements": {"exact_match": 0.0, "exact_match_normalized": 0.0,
                                   "syntax_valid": 1.0, "nonempty_and_parses": 0.0,
                                   "pass@1": None, "python_compiles": 1.0, "n": 1,
                                   "n_with_tests": 0}}}
    wrong = [score_completion(ADD, "    return a - b\n"),  # parses, fails its test
             score_completion(EVEN, "n %"),  # does not parse
             score_completion(SECRET, "zebra_quokka_total = 918273 + 1")]  # the reference
    assert [s.status for s in wrong] == ["failed", "failed", ""]
    means = summarize(wrong)
    assert (means["exact_match"], means["exact_match_normalized"], means["syntax_valid"],
            means["nonempty_and_parses"], means["pass@1"]) == (0.3333, 0.3333, 0.6667, 0.6667,
                                                               0.0)
    no_tests = summarize([score_completion(SECRET, "x = 1")])
    assert no_tests["pass@1"] is None and no_tests["n_with_tests"] == 0
    # tree-sitter takes an empty block; CPython does not, nor does the syntax layer
    empty_body = score_completion(ADD, "")
    assert not empty_body.syntax_valid and not empty_body.python_compiles
    assert not empty_body.nonempty_and_parses and empty_body.passed is False


# --- the model never sees the middle ---------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "engine").rglob("*.py"))]
    texts.append((EXAMPLES / "sample.py").read_text(encoding="utf-8"))
    tokenizer_dir = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(train_tokenizer(texts, TokenizerConfig(vocab_size=600)), tokenizer_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    model = em.AnchoredDiffusionModel(em.config_from_preset("tiny", len(tokenizer))).eval()
    return em.save_model_and_tokenizer(model, tokenizer, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def engine(model_dir):
    return InfillEngine.load(model_dir, device="cpu")


class RecordingEngine:
    """The real engine, with every request it gets and every canvas it builds kept."""

    def __init__(self, engine, monkeypatch):
        self.engine, self.requests, self.canvases = engine, [], []
        self.name, self.device, self.tokenizer = engine.name, engine.device, engine.tokenizer
        real = engine_module.build_canvas

        def spy(*args, **kwargs):
            canvas = real(*args, **kwargs)
            self.canvases.append(canvas.input_ids.clone())  # before sampling writes into it
            return canvas

        monkeypatch.setattr(engine_module, "build_canvas", spy)

    def default_options(self, **overrides):
        return self.engine.default_options(**overrides)

    def infill(self, request, **kwargs):
        self.requests.append(request)
        return self.engine.infill(request, **kwargs)


def contains_run(row: list[int], run: list[int]) -> bool:
    return any(row[i:i + len(run)] == run for i in range(len(row) - len(run) + 1))


def assert_no_leak(recorder: RecordingEngine, tasks: list[InfillTask]) -> None:
    """No reference middle in any request text nor in the canvas tokens, no length hint."""
    wrapped = recorder.tokenizer
    assert len(recorder.requests) == len(tasks) == len(recorder.canvases)
    for request, ids, task in zip(recorder.requests, recorder.canvases, tasks):
        assert request.options.length_hint is False and request.options.lengths is None
        assert request.mode == "exact"
        assert task.canonical_solution.strip() not in request.text
        reference = wrapped.encode(task.canonical_solution.strip())[0].tolist()
        for row in ids.tolist():
            assert not contains_run(row, reference)


def test_no_reference_reaches_the_model(engine, monkeypatch):
    recorder = RecordingEngine(engine, monkeypatch)
    settings = EvalSettings(steps=2, repair_rounds=1, candidates=2)
    report, scores = evaluate(recorder, TASKS, settings)
    assert_no_leak(recorder, TASKS)
    for request, task in zip(recorder.requests, TASKS):
        assert request.text == task.prompt + task.suffix
        point = len(task.prompt.encode())
        assert [(r.start, r.end) for r in request.ranges] == [(point, point)]
    # the scores are those of the completions the engine gave
    assert summarize([score_completion(t, s.completion) for t, s in zip(TASKS, scores)]) \
        == {k: v for k, v in report.items() if k in summarize(scores)}


def test_the_leak_check_catches_a_leak(engine, monkeypatch):
    recorder = RecordingEngine(engine, monkeypatch)
    real = harness.request_for

    def leaky(task, options):
        request = real(task, options)
        request.text = task.prompt + task.canonical_solution + task.suffix
        return request

    monkeypatch.setattr(harness, "request_for", leaky)
    with pytest.raises(harness.EvaluationError):  # the harness itself notices the file
        evaluate(recorder, [SECRET], EvalSettings(steps=1, repair_rounds=0, candidates=1))
    with pytest.raises(AssertionError):
        assert_no_leak(recorder, [SECRET])


# --- the builder --------------------------------------------------------------------------------

MODULE = '''\
"""A module of the test split."""

import os

LIMIT = 10


def scale(values, factor=2):
    """Multiply every value."""
    out = []
    for value in values:
        if value > LIMIT:
            value = LIMIT
        out.append(value * factor)
    return out


class Store:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.items = {}

    def put(self, key, value):
        if not key:
            raise ValueError("empty key")
        self.items[key] = value
        pass

    def path(self, key):
        return os.path.join(self.root, str(key) + ".json")
'''


def split_test_names(count: int) -> list[str]:
    """File names the path-hash rule puts in the test split."""
    names, i = [], 0
    while len(names) < count:
        name = f"mod{i}.py"
        if split_of(name) == "test":
            names.append(name)
        i += 1
    return names


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    first, second, big = split_test_names(3)
    (root / first).write_text(MODULE, encoding="utf-8")
    (root / second).write_text(MODULE.replace("scale", "grow").replace("Store", "Box"),
                               encoding="utf-8")
    (root / big).write_text(MODULE * 30, encoding="utf-8")
    (root / "train_only.py").write_text(MODULE, encoding="utf-8")  # a duplicate: skipped
    return root


def build(root, **overrides):
    return build_benchmark(BuildConfig(corpus=CorpusConfig(roots=(str(root),)), **overrides))


def test_the_builder_cuts_whole_nodes_from_the_test_split(corpus_root):
    tasks, summary = build(corpus_root, n=12, seed=0)
    assert summary["tasks"] == 12 and summary["by_kind"] == {"statements": 4, "expression": 4,
                                                             "body": 4}
    assert summary["files"]["too_large"] == 1 and summary["files"]["used"] == 2
    assert [t.kind for t in tasks[:3]] == ["statements", "expression", "body"]
    for task in tasks:
        source = (corpus_root / task.extra["path"]).read_text(encoding="utf-8")
        data = source.encode()
        assert task.prompt + task.canonical_solution + task.suffix == source
        assert data[task.start_byte:task.end_byte].decode() == task.canonical_solution
        assert task.mode == ("block" if task.kind == "body" else "node")
        assert task.canonical_solution.strip() not in ("pass", "out", "value", "LIMIT")
        middle = task.canonical_solution.strip()
        assert not (middle.startswith('"""') and middle.endswith('"""'))  # no lone docstring
        assert split_of(task.extra["path"]) == "test"
    again, _ = build(corpus_root, n=12, seed=0)
    other, _ = build(corpus_root, n=12, seed=1)
    assert [t.to_dict() for t in again] == [t.to_dict() for t in tasks]
    assert [t.task_id for t in other] != [t.task_id for t in tasks]


def test_build_command_writes_a_readable_benchmark(corpus_root, tmp_path, capsys):
    out = tmp_path / "bench.jsonl.gz"
    assert cli.main(["build", "--out", str(out), "--root", str(corpus_root), "--n", "6"]) == 0
    printed = capsys.readouterr().out
    assert "built 6 tasks (statements 2, expression 2, body 2)" in printed
    assert "fewer than 200 tasks" in printed and "warning" not in printed
    tasks = read_tasks(out)
    assert len(tasks) == 6 and all(t.language == "python" for t in tasks)
    assert cli.main(["build", "--out", str(out), "--root", str(tmp_path / "none")]) == 2


# --- the CLI, end to end ---------------------------------------------------------------------

def test_cli_end_to_end_on_a_gzip_benchmark(model_dir, tmp_path):
    bench = tmp_path / "toy.jsonl"  # gzip inside, whatever the name says
    bench.write_bytes(gzip.compress(write_tasks(tmp_path / "plain.jsonl", TASKS).read_bytes()))
    samples, plot = tmp_path / "samples.jsonl", tmp_path / "steps.png"
    command = [sys.executable, "-m", "training.evaluate", "--benchmark", str(bench),
               "--model", str(model_dir), "--device", "cpu", "--threads", "1", "--steps", "2",
               "--repair-rounds", "0", "--candidates", "1", "--seed", "3", "--json",
               "--samples", str(samples), "--plot-steps", "1,2", "--plot", str(plot)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for key in ("exact_match", "exact_match_normalized", "syntax_valid", "nonempty_and_parses",
                "pass@1", "n", "model", "seed", "steps", "repair_rounds", "limit", "benchmark"):
        assert key in report
    assert (report["n"], report["n_with_tests"], report["seed"], report["steps"]) == (3, 2, 3, 2)
    assert report["benchmark"] == str(bench) and report["limit"] is None
    assert report["length_hint"] is False and isinstance(report["pass@1"], float)
    assert "evaluate: 3/3" in done.stderr
    lines = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    assert [line["task_id"] for line in lines] == [t.task_id for t in TASKS]
    # the printed figures are those of the completions written, scored again here
    rescored = summarize([score_completion(t, line["completion"])
                          for t, line in zip(TASKS, lines)])
    for key in METRICS:
        assert report[key] == rescored[key]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads(plot.with_suffix(".json").read_text(encoding="utf-8"))
    assert numbers["steps"] == [1, 2] and len(numbers["syntax_valid"]) == 2
    assert numbers["points"][1]["syntax_valid"] == report["syntax_valid"]  # the same run


def test_markdown_table(engine):
    report, _ = evaluate(engine, TASKS[:1], EvalSettings(benchmark="toy.jsonl", steps=1,
                                                         repair_rounds=0, candidates=1))
    table = cli.markdown(report)
    assert "| exact match (whitespace-normalized) |" in table and "n=1 (1 with tests)" in table


def test_the_empty_middle_baseline_needs_no_model(tmp_path, capsys):
    bench = write_tasks(tmp_path / "toy.jsonl", TASKS)
    assert cli.main(["--benchmark", str(bench), "--baseline", "empty", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "none (empty middle)" and report["nonempty_and_parses"] == 0.0
    assert report["pass@1"] == 0.0 and report["exact_match"] == 0.0
