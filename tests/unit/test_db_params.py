"""The worker's connection parameters, in one string, and the backstop's margin."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from finex_workers.core.settings import Settings, SettingsError
from finex_workers.runtime.backstop import Deadlines, margin


def test_the_worker_url_carries_the_session_parameters() -> None:
    url = Settings.from_env({"DATABASE_URL": "postgresql://u:pw@db:5432/finex"}).worker_database_url
    assert conninfo_to_dict(url) == {
        "user": "u",
        "password": "pw",
        "host": "db",
        "port": "5432",
        "dbname": "finex",
        "application_name": "finex-worker",
        "connect_timeout": "5",
        "options": "-c client_connection_check_interval=2000",
    }


def test_the_connection_check_can_be_turned_off_and_user_parameters_win() -> None:
    off = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://db/x?application_name=mine",
            "FINEX_PG_CONNECTION_CHECK_MS": "0",
        }
    ).worker_database_url
    assert conninfo_to_dict(off) == {
        "host": "db",
        "dbname": "x",
        "application_name": "mine",
        "connect_timeout": "5",
    }
    blank = Settings.from_env({"DATABASE_URL": "postgresql://db/x?options="}).worker_database_url
    assert conninfo_to_dict(blank)["options"] == ""  # libpq sends no options then
    words = Settings.from_env({"DATABASE_URL": "host=db dbname=x"}).worker_database_url
    assert conninfo_to_dict(words)["options"] == "-c client_connection_check_interval=2000"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FINEX_PG_CONNECTION_CHECK_MS": "-1"}, "FINEX_PG_CONNECTION_CHECK_MS=-1 is out of range"),
        ({"FINEX_OUTAGE_RETURNS_MAX": "many"}, "FINEX_OUTAGE_RETURNS_MAX='many' is not an integer"),
        ({"FINEX_PG_PREPARED_STATEMENTS": "2"}, "FINEX_PG_PREPARED_STATEMENTS=2 is out of range"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_the_backstop_margin_and_cells() -> None:
    assert margin(2) == 5.0
    assert margin(600) == 30.0
    assert margin(100) == 10.0
    cells = Deadlines(3)
    cells.set(2, 123.5)
    assert (cells.get(0), cells.get(2)) == (0.0, 123.5)
