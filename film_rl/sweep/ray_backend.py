"""The sweep's Ray backend: Ray Tune schedules the trials, each asking for its CPUs and a GPU share.

Tune does the scheduling, retries and the packing of trials onto a cluster's workers; film-rl only
says what a trial needs (``{cpu: env.n_envs, gpu: gpus_per_trial}``) and how to run it (the same
:func:`film_rl.sweep.runner.run_in_process` any run uses). Which trials are finished is read from the sweep
directory, not from Tune's state, so a sweep started locally can be finished on a cluster and back.
Ray is an optional dependency: ``pip install 'film-rl[distributed]'``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from film_rl.errors import UserError
from film_rl.sweep.runner import Sweep, SweepSpec, available_cores, disk_state

INSTALL = "the ray backend needs Ray: pip install 'film-rl[distributed]' (or pip install 'ray[tune]')"


def _trial(params: dict[str, Any]) -> None:
    """Runs inside a Ray worker: one trial, reported to Tune when it is done."""
    from pathlib import Path

    from ray import tune

    from film_rl.sweep.runner import run_in_process, threads_override

    spec = SweepSpec(**params["spec"])
    sweep = Sweep(spec, Path(params["folder"]))
    trial = sweep.states[params["trial"]].trial
    threads = threads_override(spec, params["threads"][trial.id])
    metrics = run_in_process(sweep, trial, [*sweep.trial_overrides(trial), *threads])
    tune.report(metrics)


def resources(sweep: Sweep, cluster_cpus: float | None) -> dict[str, dict[str, float]]:
    """Per trial: ``env.n_envs`` CPUs (one per environment worker) and the spec's GPU share.

    On a cluster smaller than one trial's request nothing would ever start, so the request is cut
    to what the cluster has (and said so).
    """
    wanted = {}
    for trial in sweep.todo():
        cpus = float(sweep.spec.config(trial).env.n_envs)
        if cluster_cpus is not None and cpus > cluster_cpus:
            cpus = cluster_cpus
        wanted[trial.id] = {"cpu": cpus, "gpu": sweep.spec.gpus_per_trial}
    return wanted


def require_ray() -> None:
    """Fail before anything starts when Ray is not installed."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise UserError(INSTALL) from None


def run_ray(sweep: Sweep, max_concurrent: int | None, address: str | None) -> None:
    """Run the sweep's unfinished trials as Ray Tune trials.

    :param address: a running cluster (``auto``, ``HOST:PORT``, ``ray://...``); ``None`` starts a
        new local Ray for the duration of the sweep (unless ``RAY_ADDRESS`` names one), never
        attaching to one that happens to run on the machine.
    """
    require_ray()
    import ray
    from ray import tune

    todo = sweep.todo()
    if not todo:
        return
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # paths in a trial stay the user's
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # film-rl shows the trials; Tune's own tables would interleave
    address = address or os.environ.get("RAY_ADDRESS")
    started_here = not ray.is_initialized()
    own_temp: str | None = None
    if started_here:
        init: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address is None:
            # a Ray of the sweep's own, even when `ray start` left a cluster running on this machine
            # (plain ray.init() would attach to it): fresh ports, and its own short temp folder
            # (Ray's socket paths must stay under ~100 characters) instead of the shared /tmp/ray
            own_temp = tempfile.mkdtemp(prefix="film-rl-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
            init.update(num_cpus=available_cores(), include_dashboard=False, _temp_dir=own_temp)
        try:
            ray.init(address=address or "local", **init)
        except ConnectionError as err:
            raise UserError(f"cannot reach the Ray cluster at {address}: {err}") from None
    for name in ("ray.tune", "ray.train", "ray.air"):  # failures are in each trial's log and the summary
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        cluster_cpus = ray.cluster_resources().get("CPU") if address is None else None
        wanted = resources(sweep, cluster_cpus)
        bundles = {t: tune.PlacementGroupFactory([{"CPU": r["cpu"], "GPU": r["gpu"]}]) for t, r in wanted.items()}
        trainable = tune.with_resources(_trial, lambda config: bundles[config["trial"]])
        spec = dict(sweep.spec.__dict__)
        tuner = tune.Tuner(
            trainable,
            param_space={
                "trial": tune.grid_search([t.id for t in todo]),
                "spec": spec,
                "folder": str(sweep.folder.resolve()),
                "threads": {trial_id: max(1, int(r["cpu"])) for trial_id, r in wanted.items()},
            },
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str((sweep.folder / "ray").resolve()),
                failure_config=tune.FailureConfig(max_failures=sweep.spec.retries),
                verbose=0,
            ),
        )
        results = tuner.fit()
        for result in (results[i] for i in range(len(results))):
            trial = sweep.states[(result.config or {})["trial"]].trial
            seen = disk_state(sweep.folder, trial)
            if seen.state == "done":
                sweep.set(trial, "done", run_dir=seen.run_dir)
            else:
                sweep.set(trial, "failed" if result.error else "interrupted", run_dir=seen.run_dir)
    finally:
        if started_here:
            ray.shutdown()
        if own_temp is not None:
            shutil.rmtree(own_temp, ignore_errors=True)
