from amlwait.core.budget import RequestBudget


def spend(budget: RequestBudget, start: float, count: int) -> float:
    """Send ``count`` requests as fast as the budget allows; return when the last went."""
    now = start
    for _ in range(count):
        delay = budget.delay(now)
        now += delay
        assert budget.delay(now) <= 1e-9
        budget.take(now)
    return now


def test_a_burst_goes_at_once_then_the_rate_holds() -> None:
    budget = RequestBudget(rate=10, burst=20)
    assert spend(budget, 0.0, 20) == 0.0
    assert abs(spend(budget, 0.0, 10) - 1.0) < 1e-9


def test_retry_after_holds_every_request() -> None:
    budget = RequestBudget(rate=10, burst=20)
    budget.delay(0.0)
    budget.hold_until(30.0)
    assert budget.delay(5.0) == 25.0
    assert budget.delay(30.0) >= 0.0 and budget.delay(31.0) == 0.0


def test_low_remaining_reads_slow_the_rate_and_recovery_restores_it() -> None:
    budget = RequestBudget(rate=10, burst=1, low_water=100)
    budget.note_remaining(10)
    assert budget.current_rate == 1.0
    budget.note_remaining(0)
    assert budget.current_rate == budget.min_rate
    budget.note_remaining(249)
    assert budget.current_rate == 10
