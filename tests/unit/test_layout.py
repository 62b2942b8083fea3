"""The package layout's promises that the import contracts cannot see."""

from __future__ import annotations

import pytest
from rq.utils import import_attribute

from finex_workers.control import scripts
from finex_workers.runtime import jobs

JOB_FUNCTIONS = [
    "matrix_job",
    "growth_job",
    "growth_batch_job",
    "probability_job",
    "noop_job",
    "probe_job",
]


@pytest.mark.parametrize("name", JOB_FUNCTIONS)
def test_pre_0_2_job_paths_still_resolve_to_the_same_function(name: str) -> None:
    # RQ resolves a stored job's function with import_attribute; jobs enqueued before the
    # layered layout name finex_workers.jobs.<function>.
    assert import_attribute(f"finex_workers.jobs.{name}") is getattr(jobs, name)
    assert import_attribute(f"finex_workers.runtime.jobs.{name}") is getattr(jobs, name)


@pytest.mark.parametrize("name", ["put_back_job", "recover_one"])
def test_scripts_that_put_back_carry_the_one_put_back(name: str) -> None:
    text = scripts.source(name)
    assert text.startswith(scripts.source("put_back"))
    assert "put_back(" in text.removeprefix(scripts.source("put_back"))


def test_retry_script_does_not_carry_put_back() -> None:
    assert "local function put_back" not in scripts.source("retry_one")


def test_version_flag_prints_the_pyproject_version(capsys: pytest.CaptureFixture[str]) -> None:
    from finex_workers.cli import main
    from tests.support.cluster import pinned_project_version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"finex {pinned_project_version()}"
