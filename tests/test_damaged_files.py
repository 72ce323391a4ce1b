"""Every file a run or sweep directory holds, damaged every way a disk or a user damages files, read
by every command that reads run directories: a one-line error naming the file and status 2, or a
correct run where the file is optional or can be recovered from (never a traceback, never
defaults quietly standing in for a damaged file).

The commands run in this process (``film_rl.cli.main``): an uncaught exception fails the test as
the traceback it would show a user.
"""

from __future__ import annotations

import random
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import TINY, run_cli

from film_rl import cli

SWEEP_TINY = [o for o in TINY if not o.startswith(("eval.freq", "logging."))] + ["checkpoint.freq=128"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished single-trial sweep: its trial's run holds every file a run directory can."""
    runs = tmp_path_factory.mktemp("runs")
    done = run_cli("sweep", "experiments/quickstart.yaml", f"runs_dir={runs}", *SWEEP_TINY, "--name", "fuzz")
    assert done.returncode == 0, done.stdout + done.stderr
    return runs / "sweeps" / "fuzz"


def run_of(sweep: Path) -> Path:
    (run,) = [p for p in (sweep / "trials").glob("*/*/*") if p.is_dir()]
    return run


# --------------------------------------------------------------------------- the damage


def _mismatched(path: Path) -> None:
    """Valid in form, wrong in content: JSON of another shape, a zip of other members, a config of
    another policy, a CSV of other columns."""
    if path.suffix == ".json":
        path.write_text('{"something": ["else"]}\n')
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a model")
    elif path.name == "config.yaml":  # a complete config, of a policy other than the saved one
        config = yaml.safe_load(path.read_text())
        config["agent"]["policy"] = "lstm"  # RecurrentPPO for a PPO model
        path.write_text(yaml.safe_dump(config))
    elif path.suffix == ".yaml":
        path.write_text("name: 5\nexperiment: [1, 2]\n")
    else:
        path.write_text("a,b\n1,2\n")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "missing": lambda p: p.unlink(),
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "random bytes": lambda p: p.write_bytes(random.Random(p.name).randbytes(512)),
    "wrong content": _mismatched,
}

#: every file a finished run and its sweep hold that some command reads back
FILES = [
    "run/config.yaml",
    "run/vocab.json",
    "run/model.zip",
    "run/stats.json",
    "run/eval.json",
    "run/progress.csv",
    "run/checkpoints/newest.zip",
    "run/checkpoints/newest.stats.json",
    "sweep/sweep.yaml",
    "sweep/summary.json",
]

READERS = ["evaluate", "train --resume", "analyze", "report", "sweep --resume"]
#: analyze opens a run exactly as evaluate does (runs.read_config, read_vocab, locate, load_model)
#: and then spends ~1.5 s on its figures: it reads the damage of the files that path opens
ANALYZE_READS = {"run/config.yaml", "run/vocab.json", "run/model.zip", "run/checkpoints/newest.zip"}


def locate(sweep: Path, name: str) -> Path:
    root, _, rest = name.partition("/")
    base = sweep if root == "sweep" else run_of(sweep)
    if rest.startswith("checkpoints/newest"):
        newest = max((base / "checkpoints").glob("step_*.zip"), key=lambda p: int(p.stem.split("_")[1]))
        return newest if rest.endswith(".zip") else newest.with_name(f"{newest.stem}.stats.json")
    return base / rest


def expected(name: str, damage: str, reader: str) -> str:
    """What a reader must do with a damaged file: ``error`` (status 2, one line naming the file),
    ``ok`` (status 0), or the one-line refusal an intact input gets (``finished``: resuming a
    finished, evaluated run; ``unfinished``: reporting a sweep whose only trial is not evaluated)."""
    file = name.rpartition("/")[2]
    if file == "config.yaml":
        if reader in ("report", "sweep --resume") and damage != "missing":
            return "ok"  # finished trials are found by their eval.json; the config is not needed
        return "error"
    if file == "sweep.yaml":
        return "error" if reader in ("report", "sweep --resume") else _intact(reader)
    if file == "vocab.json":
        return "error" if reader in ("evaluate", "train --resume", "analyze") else _intact(reader)
    if file == "model.zip":
        if reader == "train --resume":
            return "ok"  # goes on from the newest intact checkpoint, saying so
        if reader in ("evaluate", "analyze"):
            return "ok" if damage == "missing" else "error"  # missing: the newest checkpoint is the model
        return _intact(reader)
    if file == "stats.json":
        if reader == "train --resume":
            return "finished" if damage == "missing" else "ok"  # damaged: the checkpoint before it
        if reader == "report":
            return "ok" if damage == "missing" else "error"
        return _intact(reader)
    if file == "eval.json":
        if reader == "train --resume":
            return "ok"  # a finished model whose evaluation is missing or damaged is evaluated again
        if reader == "report":
            return "unfinished" if damage == "missing" else "error"
        if reader == "sweep --resume":
            return "ok" if damage == "missing" else "error"  # missing: the trial is evaluated
        return _intact(reader)
    if file == "progress.csv":
        if reader == "report" and damage in ("random bytes", "wrong content"):
            return "error"
        return _intact(reader)  # missing, empty or cut short: a log with fewer rows
    return _intact(reader)  # a checkpoint older than model.zip, or summary.json: not read back


def _intact(reader: str) -> str:
    return "finished" if reader == "train --resume" else "ok"


def invoke(reader: str, sweep: Path, run: Path, tmp_path: Path) -> int:
    args = {
        "evaluate": ["evaluate", str(run), "--episodes", "1"],
        "train --resume": ["train", "--resume", str(run)],
        "analyze": ["analyze", str(run), "--instructions", "2", "--episodes", "0", "--out", str(tmp_path / "a")],
        "report": ["report", str(sweep), "--wandb", "disabled"],
        "sweep --resume": ["sweep", "--resume", str(sweep)],
    }[reader]
    return cli.main(args)


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", FILES)
def test_damaged_file_is_named_or_recovered_from(
    sweep_dir: Path, tmp_path: Path, name: str, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for reader in READERS:
        if reader == "analyze" and name not in ANALYZE_READS:
            continue
        sweep = tmp_path / reader.replace(" --", "-") / "fuzz"
        shutil.copytree(sweep_dir, sweep, symlinks=True)
        target = locate(sweep, name)
        DAMAGE[damage](target)
        capsys.readouterr()
        code = invoke(reader, sweep, run_of(sweep), tmp_path / reader.replace(" --", "-"))
        err = capsys.readouterr().err
        want = expected(name, damage, reader)
        where = f"{reader} with {damage} {name}: status {code}, stderr {err!r}"
        if want == "ok":
            assert code == 0, where
            continue
        assert code == 2, where
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("film-rl "), where
        if want == "error":
            assert target.name in lines[0] or (damage == "missing" and target.parent.name in lines[0]), where
        elif want == "finished":
            assert "already reached its budget" in lines[0], where
        else:
            assert "no finished trial" in lines[0], where
