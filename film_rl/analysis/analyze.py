"""``film-rl analyze``: what a trained FiLM generator learned about its instructions.

Each instruction's parameters across every conditioned layer, (γ, β) for FiLM, are a learned
representation of the task. This module reads them back from a run and studies them the way the
FiLM literature does: γ against β per feature map, coloured by feature map and by the words of the
instruction; PCA and t-SNE of the concatenated parameters; the policy run with parameters
interpolated between two instructions; and analogies, FiLM(A) - FiLM(B) + FiLM(C), played in the
environment to see whether the agent reaches the analogous goal.

Instructions are the missions a run's levels produce (sampled by resetting them with
consecutive seeds), or every instruction of a task that has a fixed set (the games of a suite).
Parameters are reported as the layers use them: γ = 1 + Δγ (the generator outputs Δγ), β, and
the gate's pre-sigmoid g.

>>> mission_attributes("pick up the grey key on your left")
{'kind': 'pick up', 'colour': 'grey', 'object': 'key', 'location': 'left', 'article': 'the'}
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from threadpoolctl import threadpool_limits

from film_rl.analysis import outputs
from film_rl.analysis.results import (
    PARAMETERS,
    Analogy,
    Analysis,
    FilmParameters,
    Instruction,
    Interpolation,
    Projection,
    percent,
)
from film_rl.config import BabyAIEnvConfig, ExperimentConfig
from film_rl.config.babyai import HoldoutConfig
from film_rl.errors import UserError
from film_rl.files import write_json
from film_rl.model.networks import FiLMGenerator
from film_rl.run import run_dir as runs
from film_rl.tasks.base import Task
from film_rl.tasks.episodes import rollout
from film_rl.tasks.instructions import COLOURS, OBJECT_TYPES, Vocabulary, instruction_kind, split_words
from film_rl.tasks.registry import task_for

ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))

OBJECTS = (*OBJECT_TYPES, "object")
LOCATIONS = ("left", "right", "front", "behind")
WORD_CLASSES = {"colour": COLOURS, "object": OBJECTS, "location": LOCATIONS}

#: resets without a new mission after which a level is taken to have shown all of its missions
SAMPLING_PATIENCE = 1000
#: resets spent looking for one mission's episodes before giving up
SEARCH_BUDGET = 50_000
#: below this many distinct missions, a run's own levels are swapped for related ones
#: (Task.related_levels) unless --level names some: a handful of points has no structure to show
FEW_MISSIONS = 5

Progress = Callable[[int, int], None]


def check_analysable(conditioning: str) -> None:
    """concat and none have no per-feature-map parameters: say so in one line."""
    if conditioning in PARAMETERS:
        return
    how = (
        "concatenates the instruction to each layer's input" if conditioning == "concat" else "ignores the instruction"
    )
    raise UserError(
        f"nothing to analyse: this run's conditioning '{conditioning}' {how}, so it has no per-feature-map "
        "(γ, β) to study; analyze works on film, scale, bias and gate runs"
    )


# --------------------------------------------------------------------------- instructions


def mission_attributes(mission: str) -> dict[str, str]:
    """The words of a mission a plot can colour by (the grammar of film_rl.tasks.instructions).

    ``kind`` is the verb (go to / pick up / open / put next / sequence); ``colour``, ``object``
    and ``article`` describe the first object named, the one acted on ("put *the red ball* next to
    the blue key"); ``location`` is the first location word; ``any`` / ``none`` where there is
    none. The article matters: the levels write "the" for an object unique in the room, "a" otherwise.

    >>> mission_attributes("put a ball next to the blue key")
    {'kind': 'put next', 'colour': 'any', 'object': 'ball', 'location': 'none', 'article': 'a'}
    """
    words = split_words(mission)
    at = next((i for i, w in enumerate(words) if w in OBJECTS), None)
    before = words[:at][-2:] if at is not None else []
    return {
        "kind": instruction_kind(mission),
        "colour": next((w for w in before if w in COLOURS), "any"),
        "object": words[at] if at is not None else "none",
        "location": next((w for w in words if w in LOCATIONS), "none"),
        "article": next((w for w in before if w in ("the", "a")), "none"),
    }


def _key(text: str) -> str:
    """Missions compare by their words: case and punctuation ("a door, then ...") aside."""
    return " ".join(split_words(text))


class MissionScan:
    """Reset a run's levels with consecutive seeds, remembering which seeds give which mission.

    One scan samples the missions to analyse and then finds, for the interpolation and the
    analogies, seeds whose episodes carry a given mission.

    :param task: the run's task, its levels those to scan (several: each seed draws one).
    :param seed: the first seed.
    """

    def __init__(self, task: Task, seed: int) -> None:
        self.levels = list(task.env.levels)
        self.env = task.evaluation_env()
        self.first_seed = self.next_seed = seed
        #: mission -> every seed found whose reset gives it, in order
        self.seeds: dict[str, list[int]] = {}
        self.level: dict[str, str] = {}
        self.tokens: dict[str, np.ndarray] = {}
        self._by_key: dict[str, str] = {}

    @property
    def resets(self) -> int:
        return self.next_seed - self.first_seed

    def _reset(self) -> None:
        obs, info = self.env.reset(seed=self.next_seed)
        mission = str(info["mission"])
        if mission not in self.seeds:
            self.seeds[mission] = []
            self.level[mission] = str(getattr(self.env.unwrapped, "current_level", self.levels[0]))
            self.tokens[mission] = obs["instruction"]
            self._by_key[_key(mission)] = mission
        self.seeds[mission].append(self.next_seed)
        self.next_seed += 1

    def sample(self, n: int, limit: int) -> list[str]:
        """Up to ``n`` distinct missions in order of first appearance, within ``limit`` resets;
        stops early once :data:`SAMPLING_PATIENCE` resets in a row bring nothing new."""
        quiet = 0
        while len(self.seeds) < n and quiet < SAMPLING_PATIENCE and self.resets < limit:
            before = len(self.seeds)
            self._reset()
            quiet = 0 if len(self.seeds) > before else quiet + 1
        return list(self.seeds)[:n]

    def seeds_for(self, text: str, k: int) -> tuple[str, list[int]]:
        """The level's own spelling of mission ``text`` and up to ``k`` seeds whose episodes carry it."""
        key, stop = _key(text), self.resets + SEARCH_BUDGET
        while len(self.seeds.get(self._by_key.get(key, ""), [])) < k and self.resets < stop:
            self._reset()
        mission = self._by_key.get(key)
        if mission is None:
            raise UserError(
                f"mission {text!r} never came up in {self.resets:,} resets of {', '.join(self.levels)}; "
                "name one these levels produce (or pick the levels with --level)"
            )
        return mission, self.seeds[mission][:k]

    def close(self) -> None:
        self.env.close()


# --------------------------------------------------------------------------- the parameters


def film_generator(model: PPO | RecurrentPPO) -> FiLMGenerator:
    """The actor's FiLM generator (the actions' parameters, even with separate actor/critic extractors)."""
    generator = getattr(model.policy.pi_features_extractor, "generator", None)
    if not isinstance(generator, FiLMGenerator):
        raise UserError("nothing to analyse: the policy has no FiLM generator (conditioning none)")
    return generator


def layer_channels(model: PPO | RecurrentPPO) -> list[int]:
    """Feature maps of each conditioned layer of the policy's FiLM-ed CNN."""
    return [int(block.cond.channels) for block in model.policy.pi_features_extractor.cnn.blocks]  # type: ignore[union-attr]


def film_of(generator: FiLMGenerator, tokens: np.ndarray) -> torch.Tensor:
    """The generator's output for one instruction, ``(parameters,)``.

    Computed as the policy computes it when acting (one row through the no-gradient path), so
    substituting it back gives bit for bit what the policy itself would use.
    """
    row = torch.as_tensor(np.asarray(tokens)[None], device=generator.head.weight.device).long()
    with torch.no_grad():
        return generator.embed(row)[0].detach().cpu()


def collect(model: PPO | RecurrentPPO, conditioning: str, instructions: list[Instruction]) -> FilmParameters:
    generator, channels = film_generator(model), layer_channels(model)
    if generator.sizes != [len(PARAMETERS[conditioning]) * c for c in channels]:
        raise UserError(f"the saved policy's FiLM layers do not match conditioning '{conditioning}' in its config")
    raw = np.stack([film_of(generator, i.tokens).numpy() for i in instructions]).astype(np.float32)
    return FilmParameters(conditioning, instructions, raw, channels)


def layer_stats(params: FilmParameters) -> list[dict[str, Any]]:
    """Per layer and parameter: the distribution over (instruction, feature map), and the spread
    across instructions (mean over feature maps of the standard deviation over instructions): how
    much the instruction moves a feature map's modulation."""
    out = []
    for index in range(len(params.channels)):
        for name, v in params.layer(index).items():
            row: dict[str, Any] = {"layer": index, "parameter": name}
            row.update(
                {k: float(f(v)) for k, f in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max))}
            )
            row["instruction_spread"] = float(v.std(0).mean())
            if name == "gamma":
                row["negative_share"] = float((v < 0).mean())
            out.append(row)
    return out


def attribute_shares(params: FilmParameters) -> dict[str, float]:
    """How much of the parameters' variance across instructions each attribute explains: the
    between-group sum of squares over the total (η²), over every parameter at once.

    Only attributes that split the instructions into groups some of which hold several
    instructions: with one instruction per group the share is 1 whatever the parameters.

    >>> words = [("red", "a"), ("red", "the"), ("blue", "a"), ("blue", "the")]
    >>> instructions = [Instruction(f"go to {a} {c} ball", np.zeros(1), {"colour": c, "article": a}) for c, a in words]
    >>> raw = np.array([[0.0], [0.0], [2.0], [2.0]], np.float32)  # β moved by the colour alone
    >>> attribute_shares(FilmParameters("bias", instructions, raw, [1]))
    {'colour': 1.0, 'article': 0.0}
    """
    values = params.values()
    total = float(((values - values.mean(0)) ** 2).sum())
    shares = {}
    for name in sorted({k for i in params.instructions for k in i.attributes}):
        labels = np.array(params.attribute(name))
        groups = np.unique(labels)
        if total == 0 or not 1 < len(groups) < len(labels):
            continue
        within = sum(float(((values[labels == g] - values[labels == g].mean(0)) ** 2).sum()) for g in groups)
        shares[name] = 1.0 - within / total
    return dict(sorted(shares.items(), key=lambda item: -item[1]))


def project(values: np.ndarray, seed: int) -> dict[str, Projection]:
    """PCA and t-SNE of the instructions' concatenated parameters, 2-D each.

    Columns are not rescaled: γ and β share their scale, and rescaling would blow up feature maps
    the instructions barely move. t-SNE's perplexity is kept below the number of instructions.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(values)
    pca = PCA(n_components=min(2, n, values.shape[1]))
    points = pca.fit_transform(values)
    ratios = np.pad(np.nan_to_num(pca.explained_variance_ratio_), (0, 2 - points.shape[1]))
    points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    labels = (f"PC1 ({percent(ratios[0])} of the variance)", f"PC2 ({percent(ratios[1])})")
    perplexity = min(30.0, max(1.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca" if n > 2 else "random", random_state=seed)
    return {
        "pca": Projection(points, labels, [float(r) for r in ratios]),
        "tsne": Projection(tsne.fit_transform(values), (f"t-SNE 1 (perplexity {perplexity:.0f})", "t-SNE 2")),
    }


# --------------------------------------------------------------------------- running the policy on other parameters


def mix(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(1-α)·a + α·b``, in this form because α = 0 then gives ``a`` and α = 1 gives ``b`` exactly
    (``a + α·(b - a)`` can miss ``b`` by a rounding step).

    >>> a, b = torch.tensor([0.1, -2.3]), torch.tensor([0.7, 5.0])
    >>> bool(torch.equal(mix(a, b, 0.0), a)) and bool(torch.equal(mix(a, b, 1.0), b))
    True
    """
    return (1.0 - alpha) * a + alpha * b


@contextmanager
def substituted_film(generator: FiLMGenerator, params: torch.Tensor) -> Iterator[None]:
    """While active, every conditioned layer receives ``params`` whatever instruction the policy reads.

    The instance's ``embed`` is shadowed and restored afterwards. Its acting cache is neither read
    nor written meanwhile, so it can neither serve a stale entry during the substitution nor keep
    the substituted values after it.
    """
    if "embed" in vars(generator):
        raise RuntimeError("FiLM parameters are already substituted")
    fixed = params.to(generator.head.weight.device)

    def embed(instruction: torch.Tensor) -> torch.Tensor:
        return fixed.expand(instruction.shape[0], -1)

    generator.embed = embed  # type: ignore[method-assign]
    try:
        yield
    finally:
        del generator.embed


class SeedList(gym.Wrapper[Any, Any, Any, Any]):
    """Roll-out episode ``i`` (reset with seed ``i``) plays seed ``seeds[i]``, so that
    :func:`film_rl.tasks.episodes.rollout` runs chosen episodes.

    :param env: the wrapped env.
    :param seeds: the env seed of each episode.
    """

    def __init__(self, env: gym.Env, seeds: Sequence[int]) -> None:
        super().__init__(env)
        self.seeds = list(seeds)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is None or not 0 <= seed < len(self.seeds):
            raise ValueError(f"episode index {seed} outside 0..{len(self.seeds) - 1}")
        return self.env.reset(seed=self.seeds[seed], options=options)


class GoalEpisodes:
    """Success on a mission's goal for any parameters the policy is given.

    The env of an episode "on A's goal" is the level's own episode for a seed whose reset gives
    mission A: the level's generator sets the layout, the goal and its verifier together, for any
    verb (go to, pick up, open, put next, sequences). Setting another goal on an existing instance
    would need a parser from mission text to the level's instruction objects, and could make layouts
    the level never produces (the goal object absent or ambiguous). The policy's instruction is
    left as A, but while parameters are substituted the generator never reads it. Every call
    replays the same seeds and the same action-sampling stream, so two parameter settings differ
    only by their parameters, and the policy's own parameters reproduce its own episodes exactly.

    :param model: the trained policy.
    :param task: where the episodes come from (the scan's, so seeds mean the same episodes).
    :param seed: seeds the action sampling of every call.
    :param deterministic: argmax actions instead of sampled ones.
    :param progress: called with the number of episodes each call played.
    """

    def __init__(
        self,
        model: PPO | RecurrentPPO,
        task: Task,
        seed: int,
        deterministic: bool,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.model, self.task = model, task
        self.generator = film_generator(model)
        self.seed, self.deterministic, self.progress = seed, deterministic, progress

    def success(self, mission: str, seeds: Sequence[int], params: torch.Tensor | None) -> float:
        """Success rate on ``mission``'s episodes for ``seeds``; ``params=None``: the policy's own."""

        def make_env() -> gym.Env:
            return SeedList(self.task.evaluation_env(), seeds)

        substitution = nullcontext() if params is None else substituted_film(self.generator, params)
        with substitution, torch.random.fork_rng():
            torch.manual_seed(self.seed)
            played = rollout(self.model, make_env, len(seeds), seed=0, deterministic=self.deterministic)
        wrong = [ep.mission for ep in played if ep.mission != mission]
        if wrong:
            raise RuntimeError(f"a seed meant for {mission!r} gave {wrong[0]!r}: level resets are not reproducible")
        if self.progress is not None:
            self.progress(len(seeds))
        return float(np.mean([ep.success for ep in played]))


def interpolate(
    runner: GoalEpisodes, a: str, seeds_a: Sequence[int], film_a: torch.Tensor, b: str, seeds_b: Sequence[int],
    film_b: torch.Tensor,
) -> Interpolation:  # fmt: skip
    """Success on A's and on B's episodes for every α, and for the policy reading A's and B's own missions."""
    return Interpolation(
        a, b, list(ALPHAS),
        success_a=[runner.success(a, seeds_a, mix(film_a, film_b, alpha)) for alpha in ALPHAS],
        success_b=[runner.success(b, seeds_b, mix(film_a, film_b, alpha)) for alpha in ALPHAS],
        own_a=runner.success(a, seeds_a, None), own_b=runner.success(b, seeds_b, None),
        episodes_a=len(seeds_a), episodes_b=len(seeds_b),
    )  # fmt: skip


def evaluate_analogy(
    runner: GoalEpisodes, params: FilmParameters, film: Callable[[str], torch.Tensor],
    analogy: tuple[str, str, str, str], seeds: Sequence[int],
) -> Analogy:  # fmt: skip
    """FiLM(A) - FiLM(B) + FiLM(C) played on the expected mission's episodes, beside the expected
    mission's own parameters and A's; and where A - B + C lands among the analysed instructions.

    :param film: instruction text -> its generator output.
    """
    a, b, c, expected = analogy
    arithmetic, own = film(a) - film(b) + film(c), film(expected)
    texts = [_key(i.text) for i in params.instructions]
    distance = np.linalg.norm(params.raw.astype(np.float64) - arithmetic.double().numpy(), axis=1)
    left_out = {_key(t) for t in (a, b, c)}
    ranked = [texts[j] for j in np.argsort(distance, kind="stable") if texts[j] not in left_out]
    nearest = next((i.text for i in params.instructions if ranked and _key(i.text) == ranked[0]), None)
    return Analogy(
        a, b, c, expected,
        arithmetic=runner.success(expected, seeds, arithmetic), own=runner.success(expected, seeds, own),
        control=runner.success(expected, seeds, film(a)), episodes=len(seeds), nearest=nearest,
        rank=ranked.index(_key(expected)) + 1 if _key(expected) in ranked else None,
        distance_ratio=float((arithmetic - own).norm() / (film(a) - own).norm().clamp(min=1e-12)),
    )  # fmt: skip


def _word_class(word: str) -> str | None:
    return next((name for name, words in WORD_CLASSES.items() if word in words), None)


def _substitution(x: Sequence[str], y: Sequence[str]) -> tuple[int, str] | None:
    """(position, word class) when ``x`` and ``y`` differ in exactly one word, both of that class."""
    if len(x) != len(y):
        return None
    diff = [i for i, (u, v) in enumerate(zip(x, y, strict=True)) if u != v]
    if len(diff) != 1:
        return None
    kind = _word_class(x[diff[0]])
    return (diff[0], kind) if kind is not None and kind == _word_class(y[diff[0]]) else None


def default_pair(texts: Sequence[str], counts: dict[str, int]) -> tuple[str, str] | None:
    """Two instructions differing in one colour word (else one word of one class), the most
    frequent such pair; else the first two instructions; None with fewer than two.

    >>> default_pair(["go to the red key", "go to the red ball", "go to the blue ball"], {})
    ('go to the red ball', 'go to the blue ball')
    """
    words = {t: split_words(t) for t in texts}
    found = []
    for i, a in enumerate(texts):
        for j in range(i + 1, len(texts)):
            sub = _substitution(words[a], words[texts[j]])
            if sub is not None:
                found.append((sub[1] != "colour", -min(counts.get(a, 0), counts.get(texts[j], 0)), i, j))
    if found:
        _, _, i, j = min(found)
        return texts[i], texts[j]
    return (texts[0], texts[1]) if len(texts) >= 2 else None


def default_analogies(
    texts: Sequence[str], counts: dict[str, int], k: int, towards: Collection[str] = ()
) -> list[tuple[str, str, str, str]]:
    """Up to ``k`` analogies A - B + C = D among ``texts``: A and B differ in one word, B and C in
    another (object then colour preferred, "red ball - red key + blue key = blue ball"), D is A
    with C's word, and D was analysed too. Those whose D is in ``towards`` (held-out missions:
    parameters composed from trained ones, played on a mission never trained on) come first, then
    the most frequent instructions.

    >>> texts = ["go to the red ball", "go to the red key", "go to the blue key", "go to the blue ball"]
    >>> default_analogies(texts, {}, 1)
    [('go to the red ball', 'go to the red key', 'go to the blue key', 'go to the blue ball')]
    """
    words = {t: split_words(t) for t in texts}
    index = {tuple(w): t for t, w in words.items()}
    order = {t: i for i, t in enumerate(texts)}
    neighbours: dict[str, list[tuple[str, int, str]]] = {t: [] for t in texts}
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            sub = _substitution(words[a], words[b])
            if sub is not None:
                neighbours[a].append((b, *sub))
                neighbours[b].append((a, *sub))
    found = []
    for a in texts:
        for b, pos_ab, kind_ab in neighbours[a]:
            for c, pos_bc, kind_bc in neighbours[b]:
                if pos_bc == pos_ab:
                    continue
                d_words = list(words[a])
                d_words[pos_bc] = words[c][pos_bc]
                d = index.get(tuple(d_words))
                if d is None or d in (a, b, c):
                    continue
                preferred = (kind_ab, kind_bc) == ("object", "colour")
                frequency = -min(counts.get(t, 0) for t in (a, b, c, d))
                composed = d in towards and not {a, b, c} & set(towards)  # from trained missions only
                rank = (not composed, not preferred, frequency, *(order[t] for t in (a, b, c)))
                found.append((rank, (a, b, c, d)))
    chosen: list[tuple[str, str, str, str]] = []
    for _, (a, b, c, d) in sorted(found):  # each from another A, and not the mirror image of one chosen
        if len(chosen) < k and all(a != x[0] and {a, b, c, d} != set(x) for x in chosen):
            chosen.append((a, b, c, d))
    return chosen


# --------------------------------------------------------------------------- the command


def _on_levels(config: ExperimentConfig, levels: list[str], vocab: Vocabulary) -> Task:
    """A task playing ``levels`` for the analysis: every mission of them (the run's holdout is
    its own task's, resolved on its own levels; another level need not pass its checks)."""
    env = replace(config.env, levels=levels)
    if isinstance(env, BabyAIEnvConfig):
        env = replace(env, holdout=HoldoutConfig())
    return task_for(replace(config, env=env), vocab)


def _split(split: dict[str, str], text: str) -> dict[str, str]:
    """A run with held-out instructions colours (and rings) them as ``split``: held out / trained."""
    return {"split": split[text]} if split else {}


def _check_words(vocab: Vocabulary, texts: Sequence[str]) -> None:
    """Named instructions must be in the run's vocabulary: the generator would read ``<unk>`` otherwise."""
    for text in texts:
        unknown = [w for w in split_words(text) if w not in vocab.stoi]
        if unknown or not split_words(text):
            problem = f"unknown word {unknown[0]!r}" if unknown else "no words"
            raise UserError(f"instruction {text!r}: {problem} (the run's vocabulary has {len(vocab)} tokens)")


def _feature_maps(params: FilmParameters, layer: int, chosen: Sequence[int] | None) -> list[int]:
    """The maps named, checked; by default the 3 whose modulation the instruction moves most."""
    channels = params.channels[layer]
    if chosen:
        bad = [m for m in chosen if not 0 <= m < channels]
        if bad:
            raise UserError(f"--feature-map {bad[0]}: layer {layer} has {channels} feature maps (0..{channels - 1})")
        return list(chosen)
    spread = sum(v.std(0) for v in params.layer(layer).values())
    return sorted(np.argsort(-spread, kind="stable")[: min(3, channels)].tolist())


def analyze(
    target: str | Path,
    out: Path | None = None,
    n_instructions: int = 200,
    layer: int = -1,
    feature_maps: Sequence[int] | None = None,
    episodes: int = 50,
    seed: int = 0,
    deterministic: bool | None = None,
    pair: tuple[str, str] | None = None,
    analogies: Sequence[tuple[str, str, str, str]] = (),
    n_analogies: int = 2,
    levels: Sequence[str] | None = None,
    device: str = "cpu",
    threads: int = 1,
    progress: Progress | None = None,
) -> Analysis:
    """Analyse a run's FiLM parameters and write figures, ``film_params.csv``, ``summary.md`` and
    ``analysis.json`` to ``out`` (default ``RUN_DIR/analysis``); log them to the run's wandb run.

    :param target: a run directory, or a model / checkpoint zip inside one.
    :param n_instructions: distinct missions to sample (a fixed set, such as games: all of it, always).
    :param layer: the layer of the scatter plots (negative: from the last).
    :param feature_maps: the attribute scatter's feature maps (default: the 3 the instructions move most).
    :param episodes: per success rate of the interpolation and analogies; 0 skips both.
    :param seed: the first env seed scanned, and the action sampling's seed.
    :param deterministic: argmax actions (default: the run's ``eval.deterministic``).
    :param pair: the interpolation's A and B (default: two missions differing in a colour word).
    :param analogies: (A, B, C, expected) to evaluate; none: up to ``n_analogies`` found among the missions.
    :param levels: sample missions from these levels instead of the run's own.
    :param device: torch device of the policy.
    :param threads: torch's and t-SNE's threads. The policy acts on a few observations at a time,
        where one thread is fastest; on a busy machine a second one only contends.
    :param progress: ``(episodes played, episodes in all)`` after each batch of episodes.
    """
    run_dir, model_path = runs.locate(target)
    config = runs.read_config(run_dir)
    conditioning = config.agent.conditioning
    check_analysable(conditioning)
    vocab = runs.read_vocab(run_dir)
    own_task = task_for(config, vocab)
    fixed = own_task.fixed_instructions()
    if fixed is not None and (pair or analogies or levels):
        raise UserError(
            "--pair, --analogy and --level are for runs whose instructions are missions; "
            f"this run's are its {own_task.instruction_noun}"
        )
    chosen_levels = levels
    levels = list(levels or config.env.levels)
    task = _on_levels(config, levels, vocab)
    _check_words(vocab, [*(pair or ()), *(text for row in analogies for text in row)])
    out = out if out is not None else run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    model = runs.load_model(config, model_path, device=device)
    notes: list[str] = []
    scan: MissionScan | None = None
    if fixed is not None:
        instructions = [Instruction(text, tokens, attributes) for text, tokens, attributes in fixed]
        notes.append(
            f"every one of the run's {task.instruction_noun} is analysed; they have scores, not goals an episode "
            "reaches or misses, so the interpolation and the arithmetic are skipped."
        )
    else:
        task.validate()
        scan = MissionScan(task, seed)
        texts = scan.sample(n_instructions, limit=max(10_000, 50 * n_instructions))
        few = len(texts) < min(FEW_MISSIONS, n_instructions)  # the level ran out of missions, not the ask
        related = task.related_levels(texts) if chosen_levels is None and few else None
        if related:  # one mission says nothing about a representation: look where there are more
            notes.append(
                f"{', '.join(levels)} gives {len(texts)} distinct mission{'s' if len(texts) > 1 else ''}: the "
                f"missions analysed are {', '.join(related)}'s, which the policy may never have seen "
                "(--level names others)."
            )
            scan.close()
            levels = related
            task = _on_levels(config, levels, vocab)
            scan = MissionScan(task, seed)
            texts = scan.sample(n_instructions, limit=max(10_000, 50 * n_instructions))
        held = own_task.splits() != ("all",)  # the run's own holdout, whichever levels are analysed
        split = {t: "held out" if own_task.is_held_out(t) else "trained" for t in texts} if held else {}
        instructions = [
            Instruction(t, scan.tokens[t], {**mission_attributes(t), "level": scan.level[t]} | _split(split, t))
            for t in texts
        ]
        if len(texts) < n_instructions:
            notes.append(f"{', '.join(levels)} gave {len(texts)} distinct missions in {scan.resets:,} resets "
                         f"(--instructions asked for {n_instructions}; the levels seem to have no more).")  # fmt: skip
    params = collect(model, conditioning, instructions)
    n_layers = len(params.channels)
    if not -n_layers <= layer < n_layers:
        raise UserError(f"--layer {layer}: this policy has {n_layers} conditioned layers (0..{n_layers - 1})")
    result = Analysis(
        run_dir=str(run_dir), model=str(model_path), out=str(out), conditioning=conditioning,
        parameters=list(params.names), kind=task.kind, instruction_noun=task.instruction_noun,
        levels=levels, own_levels=levels == config.env.levels,
        instructions=len(instructions), layer_sizes=params.sizes, resets=scan.resets if scan else 0,
        layer=layer % n_layers, feature_maps=_feature_maps(params, layer % n_layers, feature_maps),
        layer_stats=layer_stats(params), attribute_shares=attribute_shares(params), notes=notes,
    )  # fmt: skip
    projections: dict[str, Projection] = {}
    if len(instructions) < 2:
        notes.append("Projections need two instructions or more; this analysis has one.")
    elif not np.ptp(params.raw, axis=0).any():
        notes.append("Every instruction gets the same parameters (an untrained generator?): nothing to project.")
    else:
        with threadpool_limits(threads):  # t-SNE's OpenMP threads, as torch's
            projections = project(params.values(), seed)
        result.pca_explained = projections["pca"].explained
    result.csv = str(outputs.write_csv(params, out / "film_params.csv"))
    result.figures = outputs.parameter_figures(params, result, projections, out, seed)
    if scan is not None and episodes > 0:
        runner = GoalEpisodes(model, task, seed, config.eval.deterministic if deterministic is None else deterministic)
        _play(params, result, scan, runner, pair, analogies, n_analogies, episodes, progress)
    elif scan is not None:
        notes.append("--episodes 0: the interpolation and the arithmetic were skipped.")
    if scan is not None:
        scan.close()
    result.summary = str(outputs.write_summary(result, params, out / "summary.md"))
    result.wandb = outputs.log_to_wandb(config, run_dir, result, params)
    write_json(out / "analysis.json", result.to_dict(), indent=2)
    return result


def _play(
    params: FilmParameters,
    result: Analysis,
    scan: MissionScan,
    runner: GoalEpisodes,
    pair: tuple[str, str] | None,
    analogies: Sequence[tuple[str, str, str, str]],
    n_analogies: int,
    episodes: int,
    progress: Progress | None,
) -> None:
    """The interpolation and the analogies, with their figures; every mission's seeds are found
    first, so the progress total is known from the start."""
    texts = [i.text for i in params.instructions]
    counts = {t: len(scan.seeds[t]) for t in texts}
    pair = pair or default_pair(texts, counts)
    held = [i.text for i in params.instructions if i.attributes.get("split") == "held out"]
    chosen = list(analogies) or default_analogies(texts, counts, n_analogies, towards=held)
    if pair is None:
        result.notes.append("The interpolation needs two instructions; this analysis has one.")
    if not chosen:
        result.notes.append("No analogy A - B + C = D was found among the analysed missions (name one with --analogy).")
    found = {_key(t): scan.seeds_for(t, episodes) for t in [*(pair or ()), *(row[3] for row in chosen)]}
    short = [mission for mission, seeds in found.values() if len(seeds) < episodes]
    if short:
        result.notes.append(f"Fewer than {episodes} episodes were found for: {', '.join(short)}.")
    # every α and the policy's own parameters, on A's and on B's episodes; three settings per analogy
    total = sum((len(ALPHAS) + 1) * len(found[_key(t)][1]) for t in pair or ())
    total += sum(3 * len(found[_key(row[3])][1]) for row in chosen)
    played = 0

    def advance(n: int) -> None:
        nonlocal played
        played += n
        if progress is not None:
            progress(played, total)

    runner.progress = advance
    advance(0)
    analysed = {_key(i.text): torch.from_numpy(params.raw[k].copy()) for k, i in enumerate(params.instructions)}

    def film(text: str) -> torch.Tensor:  # an analysed row, or the generator on the words given
        known = analysed.get(_key(text))
        return known if known is not None else film_of(runner.generator, runner.task.encode_instruction(text))

    out = Path(result.out)
    if pair is not None:
        (a, seeds_a), (b, seeds_b) = found[_key(pair[0])], found[_key(pair[1])]
        result.interpolation = interpolate(runner, a, seeds_a, film(a), b, seeds_b, film(b))
        result.figures["interpolation"] = str(outputs.interpolation_figure(result.interpolation, out))
    for a, b, c, expected in chosen:
        mission, seeds = found[_key(expected)]
        result.analogies.append(evaluate_analogy(runner, params, film, (a, b, c, mission), seeds))
    if result.analogies:
        result.figures["arithmetic"] = str(outputs.arithmetic_figure(result.analogies, out))
