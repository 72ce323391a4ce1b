"""The policy classes under the path the first release saved them by.

A saved ``model.zip`` names its policy and features-extractor classes by module path (SB3 pickles
them by reference), and models of film-rl 0.1.0 say ``film_rl.policies``: this module keeps them
loadable with plain ``PPO.load`` / ``RecurrentPPO.load``. New code imports :mod:`film_rl.model.policies`.
"""

from film_rl.model.policies import FilmCnnPolicy, FilmLstmPolicy, GameFeatures, InstructionFeatures

__all__ = ["FilmCnnPolicy", "FilmLstmPolicy", "GameFeatures", "InstructionFeatures"]
