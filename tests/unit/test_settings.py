"""Settings parse once and refuse bad values with a message naming the variable and range."""

import pytest

from finex_workers.core.settings import Settings, SettingsError


def test_defaults_follow_the_runbook() -> None:
    s = Settings.from_env({})
    assert dict(s.concurrency) == {"matrix": 5, "growth": 10, "probability": 10}
    assert s.connections_needed() == 25
    s.check_budget()  # 25 fits the default budget of 40


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MATRIX_WORKER_CONCURRENCY": "0"},
            "MATRIX_WORKER_CONCURRENCY=0 is out of range (allowed: 1..64)",
        ),
        ({"GROWTH_WORKER_CONCURRENCY": "ten"}, "GROWTH_WORKER_CONCURRENCY='ten' is not an integer"),
        ({"FINEX_RETRY_INTERVALS": "5,x"}, "FINEX_RETRY_INTERVALS='5,x' must be comma-separated"),
        ({"FINEX_PG_CONNECTION_BUDGET": "-1"}, "FINEX_PG_CONNECTION_BUDGET=-1 is out of range"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert message in str(err.value)


def test_budget_exceeded_names_the_numbers() -> None:
    s = Settings.from_env({"MATRIX_WORKER_CONCURRENCY": "20", "FINEX_PG_CONNECTION_BUDGET": "30"})
    with pytest.raises(SettingsError) as err:
        s.check_budget()
    text = str(err.value)
    assert "need 40 PostgreSQL connections (matrix 20 + growth 10 + probability 10)" in text
    assert "FINEX_PG_CONNECTION_BUDGET is 30" in text


def test_budget_counts_only_the_queues_a_process_runs() -> None:
    s = Settings.from_env({"MATRIX_WORKER_CONCURRENCY": "20", "FINEX_PG_CONNECTION_BUDGET": "15"})
    s.check_budget(["growth"])  # 10 fits 15
    with pytest.raises(SettingsError, match=r"need 20 PostgreSQL connections \(matrix 20\)"):
        s.check_budget(["matrix"])


def test_operator_settings_refuse_bad_values_the_same_way() -> None:
    from finex_operator.settings import OperatorSettings

    assert OperatorSettings.from_env({"FINEX_OPERATOR_SWEEP_SECONDS": "2.5"}).sweep_seconds == 2.5
    with pytest.raises(SettingsError, match=r"FINEX_OPERATOR_SWEEP_SECONDS='soon' is not a number"):
        OperatorSettings.from_env({"FINEX_OPERATOR_SWEEP_SECONDS": "soon"})
    with pytest.raises(SettingsError, match=r"FINEX_OPERATOR_DLQ_SCAN_LIMIT=0 is out of range"):
        OperatorSettings.from_env({"FINEX_OPERATOR_DLQ_SCAN_LIMIT": "0"})
