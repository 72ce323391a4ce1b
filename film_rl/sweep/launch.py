"""Where a sweep's trials run: in local processes, or as Ray Tune trials on a cluster.

The two backends share the trial list, the disk state and the progress table of
:mod:`film_rl.sweep.runner`; this module only picks one and watches it.
"""

from __future__ import annotations

from typing import Any

from film_rl.sweep.ray_backend import run_ray
from film_rl.sweep.runner import Sweep, progress_table, run_local, watching


def run_sweep(
    sweep: Sweep, backend: str, max_concurrent: int | None, ray_address: str | None, console: Any
) -> dict[str, Any]:
    """Run every unfinished trial on ``backend``; returns (and writes) the summary."""
    budgets = {t.id: sweep.spec.config(t).budget.timesteps for t in sweep.spec.trials()}
    try:
        with watching(sweep, budgets, follow_disk=backend == "ray", console=console):
            if backend == "ray":
                run_ray(sweep, max_concurrent, ray_address)
            else:
                run_local(sweep, max_concurrent)
    finally:
        summary = sweep.write_summary()
    console.print(progress_table(sweep, budgets))
    return summary
