"""Episode videos with the mission, wrapped to the frame's width, or the game and its running
return written above the frames, for ``film-rl evaluate --video``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: banner layout, in pixels: font size, line height, margins
FONT_SIZE, LINE_HEIGHT, MARGIN = 16, 20, 6


def _font() -> Any:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame.freetype

    pygame.freetype.init()
    return pygame.freetype.SysFont(None, FONT_SIZE)


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines that each fit ``width`` pixels, broken between words: a long mission
    ("put the blue ball next to the green key") is shown whole, never cut. A single word wider
    than the frame gets a line of its own."""
    font = _font()
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.get_rect(candidate).width <= width - 2 * MARGIN:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


def banner(text: str, width: int, lines: int | None = None) -> np.ndarray:
    """A white banner ``width`` pixels wide holding ``text``, wrapped; ``lines``: its height in lines
    (at least what the text needs), so that every frame of a video gets the same banner height."""
    import pygame

    rows = wrap(text, width)
    height = 2 * MARGIN + LINE_HEIGHT * max(len(rows), lines or 0) - (LINE_HEIGHT - FONT_SIZE)
    surface = pygame.Surface((width, height))
    surface.fill((255, 255, 255))
    font = _font()
    for i, row in enumerate(rows):
        font.render_to(surface, (MARGIN, MARGIN + i * LINE_HEIGHT), row, (0, 0, 0))
    return np.ascontiguousarray(pygame.surfarray.array3d(surface).transpose(1, 0, 2))


def with_mission(frames: Sequence[np.ndarray], mission: str) -> list[np.ndarray]:
    """Stack a white banner holding the whole ``mission`` on top of every frame."""
    top = banner(mission, frames[0].shape[1])
    return [np.concatenate([top, f], axis=0) for f in frames]


def with_running_text(frames: Sequence[np.ndarray], texts: Sequence[str]) -> list[np.ndarray]:
    """Frame ``i`` under a banner holding ``texts[i]`` (e.g. the score so far), all of one height."""
    width = frames[0].shape[1]
    lines = max(len(wrap(t, width)) for t in texts)
    return [np.concatenate([banner(t, width, lines), f], axis=0) for f, t in zip(frames, texts, strict=True)]


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
    """One mp4 per Atari episode: ``episode_000_Pong_return_-21.mp4``; each frame shows the game,
    the return so far (as the game's own score counts) and the step.

    :param fps: 15 is real time: 60 emulator frames a second, one agent step every 4 frames.
    :param zoom: nearest-neighbour upscaling of the 210x160 screen, which is small on a monitor.
    """
    import imageio.v2 as imageio

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ep in enumerate(episodes):
        path = out_dir / f"episode_{i:03d}_{ep.level}_return_{ep.ret:g}.mp4"
        frames = [f.repeat(zoom, axis=0).repeat(zoom, axis=1) for f in ep.frames]
        texts = [f"{ep.level}   return {r:g}   step {t}" for t, r in enumerate(ep.returns)]
        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
            for frame in with_running_text(frames, texts):
                writer.append_data(frame)  # type: ignore[attr-defined]
        paths.append(path)
    return paths
