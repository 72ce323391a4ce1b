"""AGILE: a FiLM discriminator trained on goal states whose judgement replaces the level's reward.

AGILE belongs to the language family: its goal states come from BabyAI's bot and its episodes
end at minigrid's ``done`` action, so these modules name that family."""
