"""Noise schedules: TreeDiff's cosine-annealed base rate and per-sample P_mask, MDLM's linear
t ~ U(eps, 1) with antithetic sampling, the 1/t loss weight, seeded replay."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.schedules import LinearSchedule, TreeDiffSchedule, loss_weights


def test_treediff_eps_is_cosine_from_0_1_to_0_001():
    schedule = TreeDiffSchedule(total_steps=1000)
    assert schedule.eps(0) == pytest.approx(0.1)
    assert schedule.eps(1000) == pytest.approx(0.001)
    assert schedule.eps(500) == pytest.approx((0.1 + 0.001) / 2)
    assert schedule.eps(250) == pytest.approx(0.001 + 0.099 * (1 + math.cos(math.pi / 4)) / 2)
    assert schedule.eps(5000) == pytest.approx(0.001) and schedule.eps(-3) == pytest.approx(0.1)
    values = [schedule.eps(s) for s in range(0, 1001, 10)]
    assert all(a >= b for a, b in zip(values, values[1:]))


@settings(max_examples=50, deadline=None)
@given(step=st.integers(0, 3000), batch=st.integers(1, 64), seed=st.integers(0, 2**32 - 1),
       antithetic=st.booleans())
def test_treediff_rates_lie_in_eps_t_to_1(step, batch, seed, antithetic):
    schedule = TreeDiffSchedule(total_steps=2000, antithetic=antithetic)
    rates = schedule.rates(step, batch, np.random.default_rng(seed))
    assert rates.shape == (batch,) and rates.dtype == np.float64
    assert (rates >= schedule.eps(step) - 1e-12).all() and (rates <= 1.0).all()


def test_treediff_rates_follow_the_formula_and_replay():
    schedule = TreeDiffSchedule(total_steps=100)
    rates = schedule.rates(40, 8, np.random.default_rng(5))
    u = np.random.default_rng(5).random(8)
    eps = schedule.eps(40)
    np.testing.assert_allclose(rates, (1 - eps) * u + eps)
    assert np.array_equal(rates, schedule.rates(40, 8, np.random.default_rng(5)))
    assert not np.array_equal(rates, schedule.rates(40, 8, np.random.default_rng(6)))


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 128), seed=st.integers(0, 2**32 - 1),
       eps=st.floats(1e-5, 0.5))
def test_linear_antithetic_rates_are_evenly_spread_in_eps_to_1(batch, seed, eps):
    rates = LinearSchedule(eps=eps).rates(0, batch, np.random.default_rng(seed))
    assert rates.shape == (batch,)
    assert (rates >= eps).all() and (rates < 1.0 + 1e-12).all()
    gaps = np.diff(np.sort(rates))
    np.testing.assert_allclose(gaps, (1 - eps) / batch, rtol=1e-6, atol=1e-12)
    u = (rates - eps) / (1 - eps)  # one offset, stepped by 1/B modulo 1
    np.testing.assert_allclose(np.mod(u - u[0] - np.arange(batch) / batch + 0.5, 1.0), 0.5,
                               atol=1e-6)


def test_linear_schedule_is_step_independent_and_replays():
    schedule = LinearSchedule()
    a = schedule.rates(0, 16, np.random.default_rng(1))
    b = schedule.rates(999, 16, np.random.default_rng(1))
    assert np.array_equal(a, b)
    iid = LinearSchedule(antithetic=False).rates(0, 4096, np.random.default_rng(2))
    assert iid.min() >= 1e-3 and abs(iid.mean() - (1 + 1e-3) / 2) < 0.02


def test_loss_weights_are_one_over_t():
    rates = np.array([0.5, 0.25, 1.0])
    assert loss_weights(rates).tolist() == [2.0, 4.0, 1.0]
    with pytest.raises(ValueError):
        loss_weights(np.array([0.0, 0.5]))


@pytest.mark.parametrize("make", [
    lambda: TreeDiffSchedule(total_steps=0),
    lambda: TreeDiffSchedule(total_steps=10, eps_start=0.001, eps_end=0.1),
    lambda: LinearSchedule(eps=0.0),
    lambda: LinearSchedule(eps=1.0),
])
def test_bad_schedule_parameters_are_refused(make):
    with pytest.raises(ValueError):
        make()
