"""film-rl: one policy, many tasks; the task arrives as an instruction and modulates the policy
through FiLM (feature-wise linear modulation). Training goes through stable-baselines3."""

from film_rl.version import __version__

__all__ = ["__version__", "load_policy"]


def __getattr__(name: str) -> object:
    """``film_rl.load_policy``, imported when first used (importing film_rl stays light)."""
    if name == "load_policy":
        from film_rl.run.policy import load_policy

        return load_policy
    raise AttributeError(f"module 'film_rl' has no attribute {name!r}")
