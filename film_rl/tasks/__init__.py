"""Environment families: everything that differs between BabyAI/MiniGrid (language missions) and
multi-game Atari (a game id) lives here, one task module per family behind :class:`Task`."""
