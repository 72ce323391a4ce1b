"""Videos show the whole instruction however long, and a game's score as it counts up."""

from __future__ import annotations

import numpy as np
from stable_baselines3 import PPO

from film_rl.model.policies import FilmCnnPolicy
from film_rl.tasks.babyai_envs import make_babyai_env, make_vec_env
from film_rl.tasks.episodes import rollout
from film_rl.tasks.instructions import Vocabulary
from film_rl.tasks.video import MARGIN, _font, banner, with_mission, with_running_text, wrap

LONG = "pick up the grey key after you put the blue ball next to the green key"


def test_a_long_mission_wraps_between_words_and_is_kept_whole():
    lines = wrap(LONG, 160)
    assert len(lines) > 1 and " ".join(lines) == LONG
    font = _font()
    assert all(font.get_rect(line).width <= 160 - 2 * MARGIN for line in lines if " " in line)


def test_the_banner_grows_with_the_lines_and_keeps_the_frame_width():
    frame = np.zeros((160, 160, 3), np.uint8)
    short, long = with_mission([frame], "go to the red ball")[0], with_mission([frame], LONG)[0]
    assert short.shape[1] == long.shape[1] == 160
    assert long.shape[0] > short.shape[0] > 160
    assert (long[: 160 - 1] != 0).any()  # the banner is drawn (white with text), not the frame


def test_a_running_text_keeps_one_banner_height_for_the_whole_video():
    frames = [np.zeros((84, 84, 3), np.uint8)] * 3
    texts = ["Pong   return 0   step 0", "Pong   return -1   step 1", "Pong   return -21   step 2"]
    out = with_running_text(frames, texts)
    assert len({f.shape for f in out}) == 1
    assert banner(texts[0], 84).shape[0] <= out[0].shape[0] - 84


def test_recorded_episodes_keep_the_return_at_every_frame():
    vocab = Vocabulary.babyai()
    venv = make_vec_env(["BabyAI-GoToRedBallGrey-v0"], vocab, 1, seed=0)
    model = PPO(FilmCnnPolicy, venv, n_steps=16, batch_size=16, seed=0, device="cpu")

    def make_env():
        return make_babyai_env(["BabyAI-GoToRedBallGrey-v0"], vocab, render_mode="rgb_array")

    (episode,) = rollout(model, make_env, 1, seed=3, deterministic=False, record=1)
    assert len(episode.returns) == len(episode.frames) == episode.length + 1
    assert episode.returns[0] == 0.0 and episode.returns[-1] == episode.ret
    venv.close()
