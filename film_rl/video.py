"""Episode videos with the mission written above the grid, for ``film-rl evaluate --video``."""

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
