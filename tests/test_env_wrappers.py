"""The per-env wrappers a config asks for: Dict flattening always, Atari preprocessing and frame
stacking on request; Atari checks run only where ale-py and OpenCV are installed."""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_spaces import DICT, SpacesEnv

from envs.wrappers import make_env, make_wrappers, register_atari_envs, wrap
from trpo_ng.encoders import DictEncoder, FlattenEncoder, NatureCNN
from trpo_ng.policies import Policy


def test_dict_observations_are_flattened_as_the_dict_encoder_reads_them():
    env = wrap(SpacesEnv(DICT, gym.spaces.Discrete(2)), make_wrappers())
    assert env.observation_space == gym.spaces.flatten_space(DICT)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (7,)
    assert isinstance(Policy(env.observation_space, gym.spaces.Discrete(2)).encoder, FlattenEncoder)
    # a policy built on the Dict space reads the flattened observation the same way
    torch.testing.assert_close(
        DictEncoder(DICT)(torch.as_tensor(obs)[None]), torch.as_tensor(obs)[None]
    )


def test_other_observations_pass_unchanged_and_frames_stack_first():
    image = gym.spaces.Box(0, 255, (36, 36), dtype=np.uint8)
    env = wrap(SpacesEnv(image, gym.spaces.Discrete(2)), make_wrappers(frame_stack=3))
    assert env.observation_space.shape == (3, 36, 36)
    assert env.observation_space.dtype == np.uint8
    assert isinstance(Policy(env.observation_space, gym.spaces.Discrete(2)).encoder, NatureCNN)
    assert make_wrappers() == make_wrappers(frame_stack=1)
    with pytest.raises(ValueError, match="frame_stack"):
        make_wrappers(frame_stack=0)


def test_wrappers_pickle_for_subprocess_envs():
    wrappers = pickle.loads(pickle.dumps(make_wrappers(atari=True, frame_stack=4)))
    assert [getattr(w, "__name__", repr(w)) for w in wrappers] == [
        "atari_preprocessing",
        "FrameStackObservation(4)",
        "flatten_dict_observations",
    ]


@pytest.fixture
def atari():
    pytest.importorskip("cv2")
    if not register_atari_envs():
        pytest.skip("ale-py not installed (pip install 'trpo-ng[atari]')")


def test_pong_is_an_84x84x4_uint8_image_with_six_actions(atari):
    wrappers = make_wrappers(atari=True, frame_stack=4)
    envs = gym.make_vec(
        "PongNoFrameskip-v4", num_envs=2, vectorization_mode="sync", wrappers=wrappers
    )
    try:
        assert envs.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        assert envs.single_action_space == gym.spaces.Discrete(6)
        obs, _ = envs.reset(seed=0)
        policy = Policy(
            envs.single_observation_space,
            envs.single_action_space,
            hidden_sizes=(),
            cnn_features=32,
        )
        assert isinstance(policy.encoder, NatureCNN)
        with torch.no_grad():
            action = policy(torch.as_tensor(obs)).sample()
        obs, *_ = envs.step(action.numpy())
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    finally:
        envs.close()


def test_make_env_applies_the_wrappers_and_knows_atari_ids(atari):
    env = make_env("PongNoFrameskip-v4", make_wrappers(atari=True, frame_stack=4))
    assert env.observation_space.shape == (4, 84, 84)
    env.close()
    assert make_env("CartPole-v1").observation_space.shape == (4,)
    # a fresh process (a subprocess or Ray worker) has no ALE ids until make_env registers them
    code = "from envs.wrappers import make_env; print(make_env('ALE/Pong-v5').action_space)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Discrete(6)"


def test_atari_preprocessing_refuses_an_env_that_skips_frames_itself(atari):
    with pytest.raises(ValueError, match="without its own frame skip"):
        wrap(gym.make("ALE/Pong-v5"), make_wrappers(atari=True))
    env = wrap(gym.make("ALE/Pong-v5", frameskip=1), make_wrappers(atari=True, frame_stack=4))
    assert env.observation_space.shape == (4, 84, 84)
    env.close()
