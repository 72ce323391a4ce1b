"""film-rl: one policy, many tasks; the task arrives as an instruction and modulates the policy
through FiLM (feature-wise linear modulation). Training goes through stable-baselines3."""

__version__ = "0.1.0"
