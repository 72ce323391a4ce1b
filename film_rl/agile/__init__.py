"""AGILE: a FiLM discriminator trained on goal states whose judgement replaces the level's reward."""
