"""Minigrid's egocentric observation, computed without building grids.

A minigrid step spends most of its time in ``MiniGridEnv.gen_obs``: it slices the agent's 7x7
window out of the grid into a new ``Grid``, rotates that grid cell by cell up to four times (a new
``Grid`` each time), sweeps it for occlusion and encodes it. :func:`egocentric_view` reads the same
cells straight from the level's grid, through index tables that apply minigrid's own rotation
once per view size and heading, and runs minigrid's occlusion sweep on them unchanged. Its
observation is equal to ``gen_obs``'s, array for array (``tests/test_minigrid_view.py`` compares them at
every step of random play on levels with doors, boxes, keys and several rooms).

:func:`use_fast_view` installs it on an env whose observation is minigrid's stock one; an env that
overrides how it observes (its own ``gen_obs``, ``gen_obs_grid``, view extents or grid class)
keeps its own. The stock ``gen_obs_grid`` stays for what else reads it (BabyAI's bot, rendering).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np
from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import Wall, WorldObj
from minigrid.minigrid_env import MiniGridEnv

#: what minigrid shows for a visible empty cell (and the agent's own cell when it carries nothing)
EMPTY = (OBJECT_TO_IDX["empty"], 0, 0)
#: the wall minigrid's ``Grid.slice`` puts outside the level's grid
OUTSIDE = Wall()
UNSEEN = (0, 0, 0)


@functools.cache
def _window(size: int, heading: int) -> tuple[tuple[int, int], ...]:
    """For each cell of the observation, flattened as ``i * size + j``: its ``(dx, dy)`` from the
    window's top-left corner in the level's grid, after minigrid's ``heading + 1`` left rotations
    (``Grid.rotate_left``: ``new[j, n - 1 - i] = old[i, j]``)."""
    offsets = [[(i, j) for j in range(size)] for i in range(size)]  # offsets[i][j]: the slice's cell (i, j)
    for _ in range(heading + 1):
        rotated = [[(0, 0)] * size for _ in range(size)]
        for i in range(size):
            for j in range(size):
                rotated[j][size - 1 - i] = offsets[i][j]
        offsets = rotated
    return tuple(offsets[i][j] for i in range(size) for j in range(size))


@functools.lru_cache(maxsize=4096)
def _visible(opaque: tuple[bool, ...], size: int) -> tuple[bool, ...]:
    """``Grid.process_vis`` over the flattened view (``i * size + j``), the same sweep in the same
    order: light spreads from the agent's cell (bottom centre) up and sideways, stopped by cells
    one cannot see behind (walls, closed doors). It depends on nothing but which cells are opaque,
    and a level shows the agent few such patterns, so the answers are kept."""
    mask = [False] * (size * size)
    mask[(size // 2) * size + size - 1] = True
    for j in reversed(range(size)):
        for i in range(size - 1):
            k = i * size + j
            if not mask[k] or opaque[k]:
                continue
            mask[k + size] = True
            if j > 0:
                mask[k + size - 1] = True
                mask[k - 1] = True
        for i in reversed(range(1, size)):
            k = i * size + j
            if not mask[k] or opaque[k]:
                continue
            mask[k - size] = True
            if j > 0:
                mask[k - size - 1] = True
                mask[k - 1] = True
    return tuple(mask)


@functools.lru_cache(maxsize=4096)
def _reader(size: int, heading: int, width: int, height: int, top_x: int, top_y: int) -> tuple[Any, bool]:
    """The view's cells as one C-level lookup into a grid's flat list, and whether the window
    pokes out of the grid (its cells there read index ``width * height``: minigrid's outside wall,
    appended). Few windows recur: one per position and heading of a level's size."""
    outside = width * height
    indices = []
    for dx, dy in _window(size, heading):
        x, y = top_x + dx, top_y + dy
        indices.append(y * width + x if 0 <= x < width and 0 <= y < height else outside)
    return operator.itemgetter(*indices), outside in indices


def _cells(env: MiniGridEnv, size: int) -> tuple[WorldObj | None, ...]:
    top_x, top_y, _, _ = env.get_view_exts()
    grid = env.grid
    read, pokes_out = _reader(size, env.agent_dir, grid.width, grid.height, top_x, top_y)
    return read([*grid.grid, OUTSIDE] if pokes_out else grid.grid)  # type: ignore[no-any-return]


def egocentric_view(env: MiniGridEnv) -> dict[str, Any]:
    """``env.gen_obs()``'s observation: ``{image: (size, size, 3) uint8, direction, mission}``."""
    if type(env.grid) is not Grid:  # a level with its own grid class observes the stock way
        return MiniGridEnv.gen_obs(env)
    size = env.agent_view_size
    cells = _cells(env, size)
    if env.see_through_walls:
        visible: tuple[bool, ...] = (True,) * (size * size)
    else:
        visible = _visible(tuple([cell is not None and not cell.see_behind() for cell in cells]), size)
    codes = [
        (EMPTY if cell is None else cell.encode()) if seen else UNSEEN
        for cell, seen in zip(cells, visible, strict=True)
    ]
    # the agent sees what it carries in its own cell, whatever stands there
    codes[(size // 2) * size + size - 1] = env.carrying.encode() if env.carrying else EMPTY
    image = np.array(codes, dtype=np.uint8).reshape(size, size, 3)
    return {"image": image, "direction": env.agent_dir, "mission": env.mission}


def observes_stock(env: Any) -> bool:
    """Whether ``env`` (unwrapped) observes exactly as ``MiniGridEnv`` does."""
    kind = type(env)
    return isinstance(env, MiniGridEnv) and all(
        getattr(kind, name) is getattr(MiniGridEnv, name) for name in ("gen_obs", "gen_obs_grid", "get_view_exts")
    )


def use_fast_view(env: Any) -> bool:
    """Make ``env``'s minigrid core observe through :func:`egocentric_view`; ``False`` (and nothing
    changed) when it observes its own way or is not a minigrid env.

    A :func:`functools.partial` on the instance, not a bound method, so the env still pickles and
    deep-copies (a copy's ``gen_obs`` reads the copy).
    """
    core = getattr(env, "unwrapped", env)
    if not observes_stock(core):
        return False
    core.gen_obs = functools.partial(egocentric_view, core)
    return True
