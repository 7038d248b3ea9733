"""FruitClassification: label noisy fruit features, one fruit per step (a contextual bandit)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

FRUITS = ("apple", "banana", "orange")
FEATURES = ("hue", "elongation", "size", "roundness", "texture", "curvature")

# Prototype features per fruit (rows: FRUITS, columns: FEATURES), in standardised units where
# 1.0 is a large difference. The banana stands far from both others; apple and orange are
# about 1.08 apart, so with the default noise (0.3) their Gaussians overlap slightly: the
# Bayes-optimal classifier (linear here, as the classes share an isotropic covariance) labels
# about 97.5% of fruits correctly.
PROTOTYPES = np.array(
    [
        # hue, elongation, size, roundness, texture, curvature
        [-0.6, -0.5, 0.0, 0.5, -0.4, 0.0],  # apple: red-green, round, smooth skin
        [0.8, 1.5, 0.3, -1.5, -0.3, 1.0],  # banana: yellow, long, curved
        [0.0, -0.7, 0.2, 0.8, 0.4, 0.0],  # orange: orange, very round, dimpled peel
    ],
    dtype=np.float32,
)


class FruitClassificationEnv(gym.Env[np.ndarray, np.int64]):
    """Each step shows one fruit's noisy features; the action is its label.

    Observation: ``Box(6,)`` float32 features (hue, elongation, size, roundness, texture,
    curvature): a fruit's prototype plus Gaussian noise of std ``noise`` per feature, within
    bounds 8 stds beyond the prototypes. The fruit is drawn uniformly from apple (0),
    banana (1) and orange (2).
    Action: ``Discrete(3)``, the label. Reward: 1.0 if it is the shown fruit's label, else 0.0.
    An episode shows ``episode_length`` fruits and then terminates (never truncates).
    ``info["label"]`` is the label of the fruit in the observation returned with it, i.e. the
    label the next action is graded against.

    All randomness comes from ``self.np_random``, so ``reset(seed=...)`` makes it reproducible.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self, *, episode_length: int = 10, noise: float = 0.3, render_mode: str | None = None
    ) -> None:
        if (
            not isinstance(episode_length, int | np.integer)
            or isinstance(episode_length, bool)
            or episode_length < 1
        ):
            raise ValueError(f"episode_length must be an integer >= 1, got {episode_length!r}")
        if (
            not isinstance(noise, int | float | np.floating)
            or isinstance(noise, bool)
            or not math.isfinite(noise)
            or noise < 0
        ):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self.episode_length = int(episode_length)
        self.noise = float(noise)
        self.render_mode = render_mode
        # Finite bounds 8 noise stds beyond the prototypes; the clip to them in ``_show``
        # changes a feature with probability about 1e-15.
        margin = 8.0 * self.noise
        self.observation_space = spaces.Box(
            PROTOTYPES.min(axis=0) - margin, PROTOTYPES.max(axis=0) + margin, dtype=np.float32
        )
        self.action_space = spaces.Discrete(len(FRUITS))
        self._label = 0
        self._t = 0
        self._last: tuple[int, int] | None = None  # (label, action) of the last graded step

    def _show(self) -> np.ndarray:
        """Draw the next fruit; return its noisy features."""
        self._label = int(self.np_random.integers(len(FRUITS)))
        noise = self.np_random.normal(0.0, self.noise, len(FEATURES))
        obs = (PROTOTYPES[self._label] + noise).astype(np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t, self._last = 0, None
        obs = self._show()
        return obs, {"label": self._label}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in {self.action_space}, got {action!r}")
        action = int(action)
        reward = 1.0 if action == self._label else 0.0
        self._last = (self._label, action)
        self._t += 1
        terminated = self._t >= self.episode_length
        obs = self._show()
        return obs, reward, terminated, False, {"label": self._label}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        line = f"step {self._t}/{self.episode_length}: showing {FRUITS[self._label]}"
        if self._last is not None:
            label, action = self._last
            verdict = "right" if label == action else "wrong"
            line += f"; last: {FRUITS[label]} labelled {FRUITS[action]} ({verdict})"
        return line
