"""The engine-vs-naive benchmark: the naive reference sampler, the random stand-in model and
`python -m engine.bench` end to end on a tiny random model."""

import json

import pytest
import torch

import engine.bench as bench
from training.benchmarks.random_model import RECORD, make_random_model
from engine.infill import InfillEngine, build_canvas
from engine.infill.naive import naive_infill, naive_span_texts
from engine.syntax import SourceDocument, masked_spans

from .paths import EXAMPLES

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SAMPLE = (EXAMPLES / "sample.py").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A random tiny model with a small BPE trained on a slice of the stdlib's train split,
    made by the benchmark's own script."""
    out = tmp_path_factory.mktemp("tiny-random")
    torch.set_num_threads(1)
    make_random_model(out, preset="tiny", vocab_size=600, seed=0, max_bytes=200_000)
    return out


@pytest.fixture(scope="module")
def tiny_engine(tiny_dir):
    return InfillEngine.load(tiny_dir, device="cpu")


def sample_canvas(engine: InfillEngine, needle: str = "return self.price"):
    doc = SourceDocument(SAMPLE, "python")
    cursor = SAMPLE.encode().index(needle.encode())
    spans = masked_spans(doc, [(cursor, cursor)], "node")
    return doc, spans, cursor


def test_random_model_record_says_untrained(tiny_dir):
    record = json.loads((tiny_dir / RECORD).read_text())
    assert record["untrained"] and record["preset"] == "tiny"
    assert (tiny_dir / "config.json").is_file() and (tiny_dir / "tokenizer.json").is_file()


def test_naive_unmasks_exactly_one_token_per_forward(tiny_engine):
    doc, spans, _ = sample_canvas(tiny_engine)
    canvas = build_canvas(doc, spans, tiny_engine.tokenizer, budget=256, length_count=1,
                          length_hint=False)
    mask_id = tiny_engine.tokenizer.mask_id
    model = tiny_engine.model
    seen: list[int] = []
    original = model.logits

    def counting(ids, attention_mask=None, **kwargs):
        seen.append(int((ids == mask_id).sum()))
        out = original(ids, attention_mask=attention_mask, **kwargs)
        assert out.shape[:2] == ids.shape  # a full forward: logits at every position
        return out

    model.logits = counting
    try:
        ids, passes = naive_infill(model, tiny_engine.tokenizer, canvas.input_ids,
                                   canvas.attention_mask, canvas.editable)
    finally:
        del model.logits
    masks = int(canvas.editable.sum())
    assert masks == 24  # the no-hint statement length of the first length candidate
    assert passes == masks == len(seen)
    assert seen == list(range(masks, 0, -1))  # one token unmasked per forward
    assert not bool((ids == mask_id).any())
    outside = ~canvas.editable
    assert torch.equal(ids[outside], canvas.input_ids[outside])  # the context is untouched
    assert len(naive_span_texts(doc, canvas, ids, 0, tiny_engine.tokenizer)) == 1


def test_naive_span_texts_read_back_like_the_engine(tiny_engine):
    """The original tokens put back into the slot read back as the original span text."""
    doc, spans, _ = sample_canvas(tiny_engine)
    tokenizer = tiny_engine.tokenizer
    probe = build_canvas(doc, spans, tokenizer, budget=256, length_count=1, length_hint=False)
    canvas = build_canvas(doc, spans, tokenizer, budget=256, lengths=[probe.old_tokens[0]])
    (a, b), (start, length) = canvas.regions[0], canvas.slots[0][0]
    ids = canvas.input_ids.clone()
    ids[0, start:start + length] = torch.from_numpy(
        tokenizer.encode(doc.source[a:b].decode())[0])
    assert naive_span_texts(doc, canvas, ids, 0, tokenizer) == [spans[0].text]


def test_bench_main_prints_json(tiny_dir, capsys):
    code = bench.main(["--model", str(tiny_dir), "--spans", "2", "--json", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    for key in ("speedup", "engine", "naive", "spans", "model", "device", "threads", "torch",
                "canvas_tokens_mean", "mask_tokens_mean", "machine"):
        assert key in report, key
    for side in ("engine", "naive"):
        for key in ("latency_ms_p50", "latency_ms_p95", "forward_passes_mean", "tokens_per_s",
                    "exact_match"):
            assert key in report[side], (side, key)
        assert 0.0 <= report[side]["exact_match"] <= 1.0
    assert report["speedup"] > 0
    assert report["spans"] == 2 and report["threads"] == 1
    assert report["model"]["parameters"] > 0
    assert report["naive"]["forward_passes_mean"] == report["mask_tokens_mean"]
    assert report["canvas_tokens_mean"] > 256  # a long file fills the tiny model's 512 window


def test_bench_builds_a_published_layout_and_times_the_cached_step(tmp_path, capsys):
    built = tmp_path / "dream-tiny"
    code = bench.main(["--shape", "tiny", "--layout", "dream", "--build-dir", str(built),
                       "--spans", "1", "--json", "--threads", "1", "--min-file-tokens", "300",
                       "--set", "context_tokens=256"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and (built / "config.json").is_file()
    assert report["model"]["shape"] == "tiny" and report["model"]["weights"] == "random"
    assert report["engine"]["context_cache"] is True
    costs = report["step_costs"]
    assert costs["canvas_tokens"] <= 256 and costs["active_positions"] >= 1
    assert costs["full_pass_ms"] > 0 and costs["cached_step_ms"] > 0
    assert costs["cached_share"] == pytest.approx(costs["cached_step_ms"] / costs["full_pass_ms"],
                                                  rel=1e-2)
    assert report["canvas_tokens_mean"] <= 256  # the naive sampler gets the same canvas
    with pytest.raises(SystemExit):
        bench.main(["--layout", "dream"])  # a layout needs a shape


def test_spans_are_fixed_by_the_seed(tiny_engine):
    files = bench.stdlib_test_files()
    assert files and all(p.suffix in (".py", ".pyi") for p in files)
    budget = tiny_engine.max_tokens
    first = bench.select_spans(files, tiny_engine, 3, seed=1, budget=budget)
    assert first == bench.select_spans(files, tiny_engine, 3, seed=1, budget=budget)
    assert len(first) == 3 and len({(s.path, s.cursor) for s in first}) == 3
    for span in first:
        text = open(span.path, encoding="utf-8").read()
        doc = SourceDocument(text, "python")
        (found,) = masked_spans(doc, [(span.cursor, span.cursor)], "node")
        assert found.text == span.text and found.kind == "statements"
        assert len(found.node_types) == 1 and found.node_types[0] not in bench.COMPOUND


def test_bench_without_a_model_exits_2(tmp_path, capsys):
    assert bench.main(["--model", str(tmp_path / "nothing"), "--json"]) == 2
    assert "--model DIR" in capsys.readouterr().err


def test_python_dash_m_engine_bench_runs(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "engine.bench", "--model", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--model DIR" in done.stderr


def test_set_overrides_are_typed_and_checked():
    from engine.bench import parse_overrides
    from engine.infill import InvalidRequestError

    assert parse_overrides(["repair_rounds=0", "use_cache=false", "threshold=0.8"]) == {
        "repair_rounds": 0, "use_cache": False, "threshold": 0.8}
    assert parse_overrides(["steps=4"]) == {"steps": 4}
    with pytest.raises(ValueError, match="InfillOptions field"):
        parse_overrides(["nonsense=1"])
    with pytest.raises(InvalidRequestError):
        parse_overrides(["threshold=3"])


def test_train_speed_prints_json(capsys):
    from training.benchmarks.train_speed import main

    assert main(["--shapes", "64x2", "--steps", "1", "--seq-len", "32", "--batch", "2",
                 "--vocab", "300", "--threads", "1", "--dtypes", "fp32"]) == 0
    out = json.loads(capsys.readouterr().out)
    row, = out["rows"]
    assert (row["hidden"], row["layers"], row["dtype"]) == (64, 2, "fp32")
    assert row["tokens_per_s"] > 0 and "native_bf16" in out["machine"]
