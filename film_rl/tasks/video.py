"""Episode videos with the mission (BabyAI) or the game and its score (Atari) written above the
frames, for ``film-rl evaluate --video``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BANNER = 32


def _banner(text: str, width: int) -> np.ndarray:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame.freetype

    pygame.freetype.init()
    font = pygame.freetype.SysFont(None, 16)
    surface = pygame.Surface((width, BANNER))
    surface.fill((255, 255, 255))
    font.render_to(surface, (6, 9), text, (0, 0, 0))
    return np.ascontiguousarray(pygame.surfarray.array3d(surface).transpose(1, 0, 2))


def with_mission(frames: Sequence[np.ndarray], mission: str) -> list[np.ndarray]:
    """Stack a white banner holding ``mission`` on top of every frame."""
    banner = _banner(mission, frames[0].shape[1])
    return [np.concatenate([banner, f], axis=0) for f in frames]


def write_episode_videos(episodes: Sequence[Any], out_dir: Path, fps: int = 6) -> list[Path]:
    """One mp4 per episode: ``episode_003_success_go-to-the-red-ball.mp4``."""
    import imageio.v2 as imageio

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ep in enumerate(episodes):
        slug = re.sub(r"[^a-z0-9]+", "-", ep.mission.lower()).strip("-")[:60]
        verdict = "success" if ep.success else "failure"
        path = out_dir / f"episode_{i:03d}_{verdict}_{slug}.mp4"
        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
            for frame in with_mission(ep.frames, ep.mission):
                writer.append_data(frame)  # type: ignore[attr-defined]
        paths.append(path)
    return paths


def write_game_videos(episodes: Sequence[Any], out_dir: Path, fps: int = 15, zoom: int = 2) -> list[Path]:
    """One mp4 per Atari episode: ``episode_000_Pong_return_-21.mp4``, the game and score shown.

    :param fps: 15 is real time: 60 emulator frames a second, one agent step every 4 frames.
    :param zoom: nearest-neighbour upscaling of the 210x160 screen, which is small on a monitor.
    """
    import imageio.v2 as imageio

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ep in enumerate(episodes):
        path = out_dir / f"episode_{i:03d}_{ep.level}_return_{ep.ret:g}.mp4"
        frames = [f.repeat(zoom, axis=0).repeat(zoom, axis=1) for f in ep.frames]
        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
            for frame in with_mission(frames, f"{ep.level}   return {ep.ret:g}   {ep.length} steps"):
                writer.append_data(frame)  # type: ignore[attr-defined]
        paths.append(path)
    return paths
