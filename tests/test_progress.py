"""Progress a user sees: a bar on a terminal, plain lines in a log file, never past the budget;
and the torch threads a run takes by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY

from film_rl import cli
from film_rl.config import load_experiment
from film_rl.errors import UserError
from film_rl.run.train import auto_threads, set_up_torch, torch_threads

OFFLINE = [o for o in TINY if not o.startswith(("eval.freq", "logging.progress_bar"))] + ["logging.wandb=disabled"]


def test_off_a_terminal_progress_is_plain_lines_that_end_at_the_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *OFFLINE, "logging.progress_bar=true"]
    assert cli.main(args) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " steps (" in line]
    counts = [int(line.split("/")[0].replace(",", "")) for line in lines]
    assert len(lines) >= 10 and counts == sorted(counts) and max(counts) <= 256
    assert lines[-1].startswith("256/256 steps (100%)") and "steps/s" in lines[-1]


def test_threads_auto_leaves_the_cores_to_the_envs() -> None:
    assert auto_threads(cores=2, n_envs=8, subprocess=False) == 1  # 2 cores: two torch threads contend
    assert auto_threads(cores=8, n_envs=8, subprocess=False) == 4
    assert auto_threads(cores=16, n_envs=8, subprocess=True) == 4
    assert auto_threads(cores=4, n_envs=8, subprocess=True) == 1
    quickstart = load_experiment("experiments/quickstart.yaml")
    assert quickstart.threads == "auto" and torch_threads(quickstart) is not None
    assert torch_threads(load_experiment("experiments/quickstart.yaml", ["threads=0"])) is None  # torch's own
    assert load_experiment("experiments/quickstart.yaml", ["threads=3"]).threads == 3
    with pytest.raises(UserError, match="threads: expected 'auto' or an integer, got 'many'"):
        load_experiment("experiments/quickstart.yaml", ["threads=many"])


def test_a_run_flushes_denormals_to_zero() -> None:
    """A saturated LSTM's gradients are denormals, which CPUs compute on many times slower: a run
    flushes them to zero, with the threads its config asks for."""
    threads, flushing = torch.get_num_threads(), torch.tensor([1e-40]).item() == 0.0
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    try:
        assert torch.tensor([1e-40]).item() != 0.0  # a float32 denormal, as torch keeps it by default
        set_up_torch(load_experiment("experiments/quickstart.yaml", ["threads=1"]))
        assert torch.tensor([1e-40]).item() == 0.0 and torch.get_num_threads() == 1
        assert torch.tensor([1e-37]).item() != 0.0  # the smallest normal floats are kept
    finally:
        torch.set_flush_denormal(flushing)
        torch.set_num_threads(threads)
