"""Several requests in one batch (`InfillEngine.infill_many`, what the remote server's dynamic
batching runs): each gets what it would get alone, its own errors and its own cancellation."""

import pytest

from engine.errors import InvalidRangeError, UnsupportedLanguageError
from engine.infill import ByteRange, InfillCancelled, InfillOptions, InfillRequest

from .test_infill import SAMPLE, at, engine, tokenizer  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("torch_one_thread")

JS = "function total(items) {\n  let sum = 0;\n  for (const item of items) {\n" \
     "    sum += item.price;\n  }\n  return sum;\n}\n"


def python_request(needle: str = "return self.price", **options) -> InfillRequest:
    point = at(SAMPLE, needle)
    return InfillRequest(SAMPLE, "python", [ByteRange(point, point)],
                         options=InfillOptions(**options))


def js_request(**options) -> InfillRequest:
    point = at(JS, "sum += item")
    return InfillRequest(JS, "javascript", [ByteRange(point, point)],
                         options=InfillOptions(**options))


def texts(result):
    return [c.text for c in result.candidates]


def test_a_batch_gives_each_request_what_it_gets_alone(engine):
    # cache_refresh=1: an exact cache, so the batch's shared refresh schedule changes nothing
    requests = [python_request(seed=1, steps=6, repair_rounds=1, cache_refresh=1),
                js_request(seed=2, temperature=0.0, length_candidates=2, cache_refresh=1),
                python_request("self.quantity", seed=3, keep_anchors=True, cache_refresh=1)]
    alone = [engine.infill(r) for r in requests]
    together = engine.infill_many(requests)
    assert [texts(r) for r in together] == [texts(r) for r in alone]
    assert [r.steps for r in together] == [r.steps for r in alone]
    assert all(r.timings.batch_requests == 3 for r in together)
    assert all(r.timings.batch_requests == 1 for r in alone)


def test_one_bad_request_does_not_fail_the_batch(engine):
    good = python_request(steps=4, repair_rounds=0)
    outcomes = engine.infill_many([
        InfillRequest(SAMPLE, "cobol", [ByteRange(0, 0)]), good,
        InfillRequest(SAMPLE, "python", [ByteRange(10, 10 ** 6)])])
    assert isinstance(outcomes[0], UnsupportedLanguageError)
    assert isinstance(outcomes[2], InvalidRangeError)
    assert texts(outcomes[1]) == texts(engine.infill(good))


def test_a_cancelled_request_stops_alone(engine):
    events = []
    steps_seen = {"a": 0}

    def cancel_a() -> bool:
        return steps_seen["a"] >= 2

    def on_a(event) -> None:
        steps_seen["a"] = event.step

    b = js_request(steps=8, repair_rounds=0)
    outcomes = engine.infill_many([python_request(steps=8, repair_rounds=0), b],
                                  progress=[on_a, events.append], cancelled=[cancel_a, None])
    assert isinstance(outcomes[0], InfillCancelled)
    assert steps_seen["a"] == 2
    assert texts(outcomes[1]) == texts(engine.infill(b))
    assert events and events[-1].step == outcomes[1].steps


def test_all_cancelled_raises_for_each(engine):
    outcomes = engine.infill_many([python_request(), js_request()],
                                  cancelled=[lambda: True, lambda: True])
    assert all(isinstance(o, InfillCancelled) for o in outcomes)


def test_requests_that_disagree_on_the_cache_run_in_turns(engine):
    requests = [python_request(steps=4, use_cache=False, repair_rounds=0),
                js_request(steps=4, repair_rounds=0)]
    outcomes = engine.infill_many(requests)
    assert [o.timings.batch_requests for o in outcomes] == [1, 1]
    assert [texts(o) for o in outcomes] == [texts(engine.infill(r)) for r in requests]
