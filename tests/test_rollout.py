import numpy as np
import pytest
import torch

from agents.actor_critic import ActorCriticAgent
from agents.trpo import TRPOAgent
from trpo_ng.natural_gradient import TrustRegionUpdater
from trpo_ng.normalization import ObservationNormalizer
from trpo_ng.rollout import RolloutWorker, evaluate, film_episode, make_vector_env, play_episodes


def collect(
    backend, *, seed=3, iterations=2, env_id="CartPole-v1", num_envs=2, steps=64, stepwise=False
):
    """``stepwise``: the agent acts step by step (no share sampler, ``Policy.sampler``)."""
    torch.manual_seed(seed)
    envs = make_vector_env(env_id, num_envs=num_envs, backend=backend)
    agent = TRPOAgent(envs.single_observation_space, envs.single_action_space)
    if stepwise:
        agent.sampler = lambda num_envs, steps: None
    worker = RolloutWorker(envs, steps_per_env=steps, seed=seed)
    batches = []
    for _ in range(iterations):
        b = worker.collect(agent)
        batches.append(
            {k: v.clone() if isinstance(v, torch.Tensor) else list(v) for k, v in vars(b).items()}
        )
    worker.close()
    return agent, batches


def assert_same_batches(xs, ys):
    for a, b in zip(xs, ys, strict=True):
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


def test_batch_shapes_and_episode_statistics():
    _, (b, _) = collect("sync", steps=300)
    T, N = 300, 2
    assert b["obs_TND"].shape == (T, N, 4)
    assert b["act_TN"].shape == (T, N) and b["act_TN"].dtype == torch.long
    for key in ("rew_TN", "values_TN", "next_values_TN", "term_TN", "trunc_TN"):
        assert b[key].shape == (T, N)
    # CartPole: a random-ish policy ends episodes well inside 300 steps, +1 reward per step
    assert len(b["episode_returns"]) >= 2
    assert b["episode_returns"] == [float(n) for n in b["episode_lengths"]]
    assert int(b["term_TN"].sum()) == len(b["episode_returns"])


def test_next_values_follow_the_rollout_and_stop_at_terminations():
    _, (b, _) = collect("sync", steps=200)
    ended = b["term_TN"] | b["trunc_TN"]
    following = b["values_TN"][1:]
    assert torch.equal(b["next_values_TN"][:-1][~ended[:-1]], following[~ended[:-1]])
    assert torch.all(b["next_values_TN"][b["term_TN"]] == 0)


def test_truncated_steps_bootstrap_from_the_final_observation():
    torch.manual_seed(0)
    envs = make_vector_env("Pendulum-v1", num_envs=2, backend="sync")  # truncates at 200 steps
    agent = TRPOAgent(envs.single_observation_space, envs.single_action_space)
    b = RolloutWorker(envs, steps_per_env=201, seed=0).collect(agent)
    assert b.trunc_TN[199].all() and not b.trunc_TN[:199].any()
    # the value of the final observation, not of the reset observation that followed
    assert not torch.allclose(b.next_values_TN[199], b.values_TN[200])
    assert torch.all(b.next_values_TN[199] != 0)
    assert b.act_TN.shape == (201, 2, 1)


def test_sync_and_subprocess_backends_give_identical_batches():
    _, sync = collect("sync")
    _, sub = collect("subprocess")
    assert_same_batches(sync, sub)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_a_share_sampled_up_front_is_the_share_acted_step_by_step(env_id):
    """The rollout's share sampler draws each step's numbers before the first step, call by
    call as ``act`` would: the batches, and the random stream after them, are the same."""
    _, sampled = collect("sync", env_id=env_id, steps=100)
    state = torch.get_rng_state()
    _, stepwise = collect("sync", env_id=env_id, steps=100, stepwise=True)
    assert torch.equal(state, torch.get_rng_state())
    assert_same_batches(sampled, stepwise)


def test_an_agent_whose_act_is_replaced_acts_through_it():
    """A subclass's or an instance's own ``act`` is what the rollout calls: no share sampler
    bypasses it."""

    class Still(ActorCriticAgent):
        def act(self, obs_BD, deterministic=False, noise=None):
            return torch.zeros((obs_BD.shape[0], 1))

    envs = make_vector_env("Pendulum-v1", num_envs=2, backend="sync")
    spaces = envs.single_observation_space, envs.single_action_space
    still = Still(*spaces, make_updater=TrustRegionUpdater)
    patched = TRPOAgent(*spaces)
    patched.act = lambda obs_BD, deterministic=False: torch.full((obs_BD.shape[0], 1), 0.5)
    for agent, action in ((still, 0.0), (patched, 0.5)):
        assert agent.sampler(2, 10) is None
        batch = RolloutWorker(envs, steps_per_env=10, seed=0).collect(agent)
        assert torch.equal(batch.act_TN, torch.full((10, 2, 1), action))
    assert TRPOAgent(*spaces).sampler(2, 10) is not None


def test_same_seed_same_batches_other_seed_differs():
    _, first = collect("sync", seed=5)
    _, again = collect("sync", seed=5)
    _, other = collect("sync", seed=6)
    assert torch.equal(first[1]["obs_TND"], again[1]["obs_TND"])
    assert not torch.equal(first[1]["obs_TND"], other[1]["obs_TND"])


def test_evaluate_is_deterministic():
    import gymnasium as gym

    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    agent = TRPOAgent(env.observation_space, env.action_space)
    a = evaluate(agent, env, episodes=3, seed=11)
    b = evaluate(agent, env, episodes=3, seed=11)
    assert a == b and len(a) == 3
    assert np.all(np.array(a) >= 1)


def test_episodes_played_at_once_give_one_env_in_turns_returns():
    import gymnasium as gym

    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    agent = TRPOAgent(env.observation_space, env.action_space)
    with torch.no_grad():  # modes that reach the action bounds and differ per state
        agent.policy.net[-1].weight.mul_(100)
    norm = ObservationNormalizer(env.observation_space.shape)
    norm.update(np.random.default_rng(0).normal(size=(50, 3)))
    one = evaluate(agent, env, episodes=4, seed=7, obs_normalizer=norm)
    envs = [gym.make("Pendulum-v1") for _ in range(4)]
    assert evaluate(agent, envs, episodes=4, seed=7, obs_normalizer=norm) == one
    assert evaluate(agent, envs[:3], episodes=4, seed=7, obs_normalizer=norm) == one  # waves
    assert len(set(one)) == 4


def test_play_episodes_reports_them_in_order_as_they_end():
    import gymnasium as gym

    envs = [gym.make("CartPole-v1") for _ in range(3)]
    seen = []
    returns, lengths = play_episodes(
        lambda obs: (obs[:, 2] > 0).astype(np.int64),  # push toward the pole's lean
        envs,
        seeds=[0, 1, 2, 3, 4],
        on_episode=lambda i, ret, length: seen.append((i, ret, length)),
    )
    assert seen == [(i, returns[i], lengths[i]) for i in range(5)]
    assert returns == lengths and len(set(lengths)) > 1  # CartPole pays 1 a step
    single = play_episodes(lambda obs: (obs[:, 2] > 0).astype(np.int64), envs[0], [0, 1, 2, 3, 4])
    assert single == (returns, lengths)


def test_a_filmed_episode_is_the_first_evaluated_one():
    import gymnasium as gym

    torch.manual_seed(0)
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    agent = TRPOAgent(env.observation_space, env.action_space)
    frames = film_episode(agent, env, seed=3)
    (ret,) = evaluate(agent, gym.make("CartPole-v1"), episodes=1, seed=3)
    assert len(frames) == ret and frames[0].ndim == 3


def test_unsupported_action_space_is_a_clear_error():
    import gymnasium as gym

    from trpo_ng.policies import MLPPolicy

    obs = gym.spaces.Box(-1, 1, (3,))
    with pytest.raises(ValueError, match="unsupported action space"):
        MLPPolicy(obs, gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))))
