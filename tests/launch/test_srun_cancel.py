"""``launch.srun.cancel_step`` when SLURM does not answer (audit68 #1: a farm's end
waited 30 s per node, silently, on a stopped slurmctld). Real processes: stand-in
``squeue``/``scancel`` scripts (the real ones need a SLURM; tests/slurm.py's is shared
by the session, and stopping its slurmctld would stall the other tests)."""

from __future__ import annotations

import os

import pytest

from easycluster.launch import srun


def script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return str(path)


def test_a_slurm_that_does_not_answer_is_left_with_a_warning_naming_the_step(tmp_path, monkeypatch):
    monkeypatch.setattr(srun, "CANCEL_TIMEOUT", 0.5)
    squeue = script(tmp_path / "squeue", "exec sleep 30")  # (exec: the kill ends it)
    scancel = script(tmp_path / "scancel", f"touch {tmp_path / 'cancelled'}")
    with pytest.warns(UserWarning, match=r"step ec-x of SLURM job 42 may still run.*scancel 42"):
        assert srun.cancel_step("42", "ec-x", squeue, scancel) is False
    assert not (tmp_path / "cancelled").exists()


def test_a_step_still_listed_is_cancelled_and_a_gone_job_is_quiet(tmp_path, recwarn):
    log = tmp_path / "log"
    squeue = script(tmp_path / "squeue", "echo '42.3 other'; echo '42.7 ec-x'")
    scancel = script(tmp_path / "scancel", f'echo "$@" >> {log}')
    assert srun.cancel_step("42", "ec-x", squeue, scancel) is True
    assert log.read_text().split() == ["--quiet", "42.7"]
    gone = script(tmp_path / "squeue2", "echo 'slurm_load_jobs error: Invalid job id' >&2; exit 1")
    assert srun.cancel_step("42", "ec-x", gone, scancel) is False
    assert not recwarn.list
