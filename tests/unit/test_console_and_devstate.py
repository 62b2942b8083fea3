"""The progress bar draws its end once; the dev state file is found only while make dev runs;
the Redis wait's delays are capped."""

from __future__ import annotations

import io
import itertools
import subprocess
from pathlib import Path

from finex_workers.console import ProgressBar
from finex_workers.dev import devstate
from finex_workers.runtime.redis_wait import delays


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_finished_bar_draws_its_last_line_once() -> None:
    for stream in (Tty(), io.StringIO()):
        bar = ProgressBar("x", stream=stream)
        bar(5, 10)
        bar(10, 10)
        bar(10, 10)  # a poller reporting the end again
        assert stream.getvalue().count("10/10") == 1


def test_the_state_file_is_shell_syntax_and_ignored_once_its_process_is_gone(
    tmp_path: Path,
) -> None:
    urls = {"REDIS_URL": "redis://127.0.0.1:6390/0", "DATABASE_URL": "postgresql://p@h:5440/f"}
    path = devstate.write(tmp_path, urls)
    assert devstate.read(tmp_path) == urls
    assert "export REDIS_URL=redis://127.0.0.1:6390/0" in path.read_text()
    dead = subprocess.Popen(["true"])
    dead.wait()
    path.write_text(
        path.read_text().replace(f"FINEX_DEV_PID={_pid(path)}", f"FINEX_DEV_PID={dead.pid}")
    )
    assert devstate.read(tmp_path) is None
    devstate.remove(tmp_path)
    assert devstate.read(tmp_path) is None


def _pid(path: Path) -> str:
    return next(
        line.split("=", 1)[1] for line in path.read_text().splitlines() if "FINEX_DEV_PID" in line
    )


def test_redis_wait_delays_double_and_are_capped() -> None:
    assert list(itertools.islice(delays(1, 30), 8)) == [1, 2, 4, 8, 16, 30, 30, 30]
