"""Env factory helpers: the per-env wrappers a config asks for, and Atari's registration.

``make_wrappers(atari=..., frame_stack=...)`` returns the wrappers, in order; ``make_env``
makes one env with them (training copies, evaluation, a saved agent's env alike, so all see
the same observations), and ``gym.make_vec(..., wrappers=...)`` takes the same list. The
wrappers are module-level functions and a small class, so the list pickles into subprocess
and Ray workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
from gymnasium.wrappers import AtariPreprocessing, FlattenObservation, FrameStackObservation

EnvWrapper = Callable[[gym.Env], gym.Env]

ATARI_FRAME_SKIP = 4
"""Agent steps every 4th frame, max-pooling the last two (Mnih et al. 2015)."""


def flatten_dict_observations(env: gym.Env) -> gym.Env:
    """Dict observations -> one flat Box (``gymnasium.spaces.flatten``: Box leaves flattened,
    Discrete one-hot, in the Dict's key order); other envs unchanged. The rollout buffer and
    the observation normaliser then see a Box, and ``trpo_ng.encoders.DictEncoder`` reads the
    same layout."""
    if isinstance(env.observation_space, gym.spaces.Dict):
        return FlattenObservation(env)
    return env


def atari_preprocessing(env: gym.Env) -> gym.Env:
    """The standard Atari preprocessing (Mnih et al. 2015; Machado et al. 2018, "Revisiting
    the Arcade Learning Environment"): up to 30 no-op actions at reset, frame skip 4 with
    max-pooling over the last two frames, 84x84 grayscale uint8, no termination on life loss.

    Needs an env without its own frame skip: ``PongNoFrameskip-v4``, or ``ALE/Pong-v5`` made
    with ``frameskip=1``.
    """
    if getattr(env.unwrapped, "_frameskip", 1) != 1:
        raise ValueError(
            f"wrappers.atari needs an Atari env without its own frame skip, but "
            f"{env.spec.id if env.spec else env} skips frames; use a NoFrameskip-v4 id "
            "(e.g. PongNoFrameskip-v4) or ALE/...-v5 with frameskip=1"
        )
    return AtariPreprocessing(
        env,
        noop_max=30,
        frame_skip=ATARI_FRAME_SKIP,
        screen_size=84,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,  # uint8 0..255: the CNN scales by 1/255 itself
    )


class _FrameStack:
    """``FrameStackObservation(env, k)`` as a picklable one-argument callable."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, env: gym.Env) -> gym.Env:
        return FrameStackObservation(env, self.k)

    def __repr__(self) -> str:
        return f"FrameStackObservation({self.k})"


def make_wrappers(*, atari: bool = False, frame_stack: int = 1) -> list[EnvWrapper]:
    """The wrappers, applied in this order: ``atari_preprocessing`` (if ``atari``),
    ``FrameStackObservation(frame_stack)`` (if > 1; stacked frames come first, so 84x84
    frames give a ``(k, 84, 84)`` uint8 image), then ``flatten_dict_observations``."""
    if frame_stack < 1:
        raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
    wrappers: list[EnvWrapper] = []
    if atari:
        wrappers.append(atari_preprocessing)
    if frame_stack > 1:
        wrappers.append(_FrameStack(frame_stack))
    wrappers.append(flatten_dict_observations)
    return wrappers


def wrap(env: gym.Env, wrappers: Sequence[EnvWrapper]) -> gym.Env:
    """Apply ``wrappers`` in order (as ``gym.make_vec`` does to each copy)."""
    for wrapper in wrappers:
        env = wrapper(env)
    return env


def make_env(env_id: str, wrappers: Sequence[EnvWrapper] = (), **kwargs: object) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` with ``wrappers`` applied in order. An id Gymnasium does
    not know yet gets the ALE's envs registered first, in whichever process this runs."""
    if env_id not in gym.registry:
        register_atari_envs()
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as e:  # a keyword argument this env does not take (a config's env_kwargs)
        if not kwargs:
            raise
        raise ValueError(f"config key 'env_kwargs': cannot make it with {kwargs}: {e}") from None
    return wrap(env, wrappers)


def register_atari_envs() -> bool:
    """Register the ALE's envs (``PongNoFrameskip-v4``, ``ALE/Pong-v5``, ...) with Gymnasium,
    which since 1.0 needs ``gym.register_envs(ale_py)``; False when ale-py is not installed
    (``pip install "trpo-ng[atari]"``). Importing ale-py takes ~0.2 s, so call this only for
    an env id Gymnasium does not know yet."""
    try:
        import ale_py
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True
