"""The circuit breaker's states, on an injected clock."""

from __future__ import annotations

import pytest

from core.circuit import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def failing(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def test_a_new_breaker_is_closed_and_lets_calls_through(clock: Clock) -> None:
    breaker = CircuitBreaker(clock=clock)
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(100))


def test_it_opens_after_the_threshold_of_failures_in_a_row(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30, clock=clock)
    failing(breaker, 2)
    assert breaker.state == "closed"
    failing(breaker, 1)
    assert breaker.state == "open"
    assert not breaker.allow()


def test_a_success_forgets_earlier_failures(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=clock)
    failing(breaker, 2)
    breaker.record_success()
    failing(breaker, 2)
    assert breaker.state == "closed"
    failing(breaker, 1)
    assert breaker.state == "open"


def test_open_refuses_until_the_reset_time_then_lets_exactly_one_probe_out(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=30, clock=clock)
    failing(breaker, 1)
    clock.now += 29.9
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert breaker.state == "half_open"
    assert not breaker.allow()  # everyone else waits for its outcome
    assert not breaker.allow()


def test_a_successful_probe_closes_the_circuit(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=10, clock=clock)
    failing(breaker, 2)
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()
    failing(breaker, 1)  # the count started again from zero
    assert breaker.state == "closed"


def test_a_failed_probe_opens_the_circuit_for_another_full_period(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=5, reset_after_s=10, clock=clock)
    failing(breaker, 5)
    clock.now += 10
    assert breaker.allow()
    clock.now += 2  # the probe took a while
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state == "open"
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()


def test_a_probe_that_never_reports_does_not_wedge_the_breaker(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=clock)
    failing(breaker, 1)
    clock.now += 10
    assert breaker.allow()  # this probe's task is cancelled: no outcome ever comes
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()  # a new probe


def test_late_failures_while_open_do_not_extend_the_open_period(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=clock)
    failing(breaker, 1)
    clock.now += 5
    breaker.record_failure()  # a call that went out before the circuit opened
    clock.now += 5
    assert breaker.allow()


@pytest.mark.parametrize(("threshold", "reset_after_s"), [(0, 30.0), (-1, 30.0), (5, -0.1)])
def test_nonsense_settings_are_refused(threshold: int, reset_after_s: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=threshold, reset_after_s=reset_after_s)
