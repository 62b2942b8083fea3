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


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REDIS_URL": "http://user:hunter2@cache:6379/0"},
            "REDIS_URL=http://user:***@cache:6379/0 has scheme http:// (allowed: redis://, "
            "rediss://, unix://, redis+sentinel://)",
        ),
        (
            {"REDIS_URL": "redis://127.0.0.1:99999/0"},
            "REDIS_URL=redis://127.0.0.1:99999/0 has a port that is not a number in 1..65535",
        ),
        ({"REDIS_URL": "redis://127.0.0.1:0/0"}, "has port 0 (allowed: 1..65535)"),
        (
            {"DATABASE_URL": "mysql://root:pw@db/finex"},
            "DATABASE_URL=mysql://root:***@db/finex has scheme mysql://",
        ),
    ],
)
def test_bad_service_urls_name_the_variable_and_hide_the_password(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert message in str(err.value)
    assert "hunter2" not in str(err.value)


def test_usable_service_urls_pass() -> None:
    s = Settings.from_env(
        {"REDIS_URL": "rediss://:pw@cache:6380/1", "DATABASE_URL": "host=db dbname=finex"}
    )
    assert s.redis_url == "rediss://:pw@cache:6380/1"
    assert s.database_url == "host=db dbname=finex"


def test_redact_masks_only_the_password() -> None:
    from finex_workers.core.urls import redact

    assert redact("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert redact("postgresql://app:s3cret@db:5432/finex") == "postgresql://app:***@db:5432/finex"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    assert redact("host=db password=s3cret") == "host=db password=***"
