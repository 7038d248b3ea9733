"""Every common Gymnasium space: MultiDiscrete and MultiBinary actions, Dict, Discrete and image
observations.

Exact checks first (float64): the new distributions against torch's own composed by hand, their
Fisher metric against the Hessian of their KL, the analytic Fisher-vector product against double
backprop and an explicit Fisher on tiny policies (MLP and CNN). Then forward shapes for every
pair of spaces, and one trust-region step on experience collected from a vector env of each.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import tiny_policy
from test_distributions import _kl_hessian
from test_natural_gradient import explicit_fisher
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Independent, kl_divergence

from trpo_ng.distributions import Bernoulli, MultiCategorical
from trpo_ng.encoders import DictEncoder, FlattenEncoder, NatureCNN, OneHotEncoder, make_encoder
from trpo_ng.natural_gradient import (
    TrustRegionUpdater,
    detached,
    fisher_vector_product,
    flat_params,
    gauss_newton_fisher_vector_product,
    module_distribution_fn,
)
from trpo_ng.policies import MLPPolicy, MLPValue, Policy, ValueFunction
from trpo_ng.spaces import (
    action_dtype,
    action_numpy_dtype,
    check_action_space,
    observation_dtype,
    to_env_action,
)

NVEC = (3, 2, 4)

# --------------------------------------------------------------------------- distributions


def test_multi_categorical_matches_independent_torch_categoricals(float64):
    torch.manual_seed(0)
    logits = [torch.randn(7, n) for n in NVEC]
    ours = MultiCategorical(*logits)
    refs = [TorchCategorical(logits=t) for t in logits]
    assert ours.batch_shape == (7,) and ours.event_shape == (3,) and ours.nvec == NVEC
    x = ours.sample()
    assert x.shape == (7, 3) and x.dtype == torch.long
    assert all(bool((x[:, k] < n).all()) for k, n in enumerate(NVEC))
    torch.testing.assert_close(
        ours.log_prob(x), sum(r.log_prob(x[:, k]) for k, r in enumerate(refs))
    )
    torch.testing.assert_close(ours.entropy(), sum(r.entropy() for r in refs))
    assert torch.equal(ours.mode, torch.stack([t.argmax(-1) for t in logits], -1))
    other = [t + torch.randn_like(t) for t in logits]
    expected_kl = sum(
        kl_divergence(r, TorchCategorical(logits=o)) for r, o in zip(refs, other, strict=True)
    )
    torch.testing.assert_close(kl_divergence(ours, MultiCategorical(*other)), expected_kl)
    flat = torch.cat(logits, dim=-1)
    torch.testing.assert_close(MultiCategorical.from_flat(flat, NVEC).log_prob(x), ours.log_prob(x))
    assert ours.sample((5,)).shape == (5, 7, 3)


def test_multi_categorical_rejects_mismatched_components():
    with pytest.raises(ValueError, match="batch shapes"):
        MultiCategorical(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="sizes"):
        kl_divergence(MultiCategorical(torch.zeros(1, 2)), MultiCategorical(torch.zeros(1, 3)))


def test_bernoulli_matches_torch_independent_bernoulli(float64):
    torch.manual_seed(1)
    logits = 3 * torch.randn(6, 5)
    ours, ref = Bernoulli(logits), Independent(TorchBernoulli(logits=logits), 1)
    assert ours.batch_shape == (6,) and ours.event_shape == (5,)
    x = ours.sample()
    assert x.shape == (6, 5) and x.dtype == logits.dtype
    assert bool(((x == 0) | (x == 1)).all())
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(ours.log_prob(x.long()), ref.log_prob(x))  # integer actions
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    assert torch.equal(ours.mode, (logits > 0).double())
    other = logits + torch.randn(6, 5)
    ref_other = Independent(TorchBernoulli(logits=other), 1)
    torch.testing.assert_close(kl_divergence(ours, Bernoulli(other)), kl_divergence(ref, ref_other))


def test_bernoulli_is_finite_at_saturated_logits(float64):
    logits = torch.tensor([[-60.0, 60.0, 0.0]], requires_grad=True)
    d = Bernoulli(logits)
    logp = d.log_prob(torch.tensor([[1.0, 0.0, 1.0]]))
    assert float(logp.detach()) == pytest.approx(-120.0 - np.log(2.0))  # finite, exact
    assert torch.isfinite(kl_divergence(d, Bernoulli(-logits))).all()
    assert torch.isfinite(torch.autograd.grad(logp.sum(), logits)[0]).all()


def test_multi_categorical_fisher_metric_is_kl_hessian(float64):
    logits = [torch.randn(1, n) for n in NVEC]
    M = _kl_hessian(MultiCategorical, logits)
    u = [torch.randn(1, n) for n in NVEC]
    Mu = MultiCategorical(*logits).fisher_product(tuple(u))
    torch.testing.assert_close(
        torch.cat([t.reshape(-1) for t in Mu]), M @ torch.cat([t.reshape(-1) for t in u])
    )
    assert float(M[0, 3]) == 0.0  # block-diagonal: components are independent


def test_bernoulli_fisher_metric_is_kl_hessian(float64):
    logits = torch.tensor([[-2.0, -0.3, 0.0, 1.5]])
    M = _kl_hessian(Bernoulli, [logits])
    u = torch.randn(1, 4)
    (Mu,) = Bernoulli(logits).fisher_product((u,))
    torch.testing.assert_close(Mu.reshape(-1), M @ u.reshape(-1))
    p = torch.sigmoid(logits[0])
    torch.testing.assert_close(M, torch.diag(p * (1 - p)))


# --------------------------------------------------------------------------- Fisher products

ACTION_SPACES = {
    "multi_discrete": gym.spaces.MultiDiscrete(list(NVEC)),
    "multi_binary": gym.spaces.MultiBinary(4),
}


def _double_backprop(policy, obs, damping):
    with torch.no_grad():
        old = policy(obs)
    kl = kl_divergence(old, policy(obs)).mean()
    return fisher_vector_product(kl, list(policy.parameters()), damping=damping)


@pytest.mark.parametrize("kind", sorted(ACTION_SPACES))
def test_analytic_product_equals_double_backprop_and_explicit_fisher(float64, kind):
    policy = tiny_policy(ACTION_SPACES[kind])
    obs = torch.randn(6, 3)
    F = explicit_fisher(policy, obs)
    v = torch.randn(F.shape[0])
    analytic = gauss_newton_fisher_vector_product(
        module_distribution_fn(policy, obs), list(policy.parameters()), damping=0.2
    )
    expected = F @ v + 0.2 * v
    torch.testing.assert_close(analytic(v), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        _double_backprop(policy, obs, 0.2)(v), expected, rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("kind", sorted(ACTION_SPACES))
def test_detached_rebuilds_the_new_distributions(float64, kind):
    new = tiny_policy(ACTION_SPACES[kind])(torch.randn(5, 3))
    old = detached(new)
    assert type(old) is type(new)
    for a, b in zip(old.params(), new.params(), strict=True):
        assert not a.requires_grad and b.requires_grad
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    assert float(kl_divergence(old, new).detach().abs().max()) < 1e-12


IMAGE = gym.spaces.Box(0, 255, (2, 36, 36), dtype=np.uint8)
DICT = gym.spaces.Dict(
    {
        "position": gym.spaces.Box(-1.0, 1.0, (2,)),
        "goal": gym.spaces.Box(-1.0, 1.0, (1, 2)),
        "sensors": gym.spaces.Dict({"range": gym.spaces.Box(0.0, 5.0, (3,))}),
    }
)


def _batch(space: gym.Space, n: int, seed: int = 0):
    """n observations sampled from ``space``, batched as a vector env would (tensors)."""
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, gym.spaces.Dict):
        return _stack_dict(space, samples)
    return torch.as_tensor(np.stack(samples))


def _stack_dict(space: gym.spaces.Dict, samples: list) -> dict:
    return {
        k: _stack_dict(sub, [s[k] for s in samples])
        if isinstance(sub, gym.spaces.Dict)
        else torch.as_tensor(np.stack([s[k] for s in samples]))
        for k, sub in space.spaces.items()
    }


@pytest.mark.parametrize(
    ("obs_space", "act_space"),
    [
        (IMAGE, gym.spaces.Discrete(3)),
        (IMAGE, gym.spaces.Box(-1.0, 1.0, (2,))),
        (DICT, ACTION_SPACES["multi_discrete"]),
        (gym.spaces.Discrete(5), ACTION_SPACES["multi_binary"]),
    ],
    ids=["cnn-categorical", "cnn-gaussian", "dict-multi_categorical", "onehot-bernoulli"],
)
def test_analytic_product_equals_double_backprop_through_encoders(float64, obs_space, act_space):
    torch.manual_seed(0)
    policy = Policy(obs_space, act_space, hidden_sizes=(4,), cnn_features=8).double()
    with torch.no_grad():
        policy.net[-1].weight.mul_(100.0)  # away from the near-uniform initial policy
    obs = _batch(obs_space, 4)
    params = list(policy.parameters())
    v = torch.randn(sum(p.numel() for p in params))
    analytic = gauss_newton_fisher_vector_product(
        module_distribution_fn(policy, obs), params, damping=0.1
    )
    expected = _double_backprop(policy, obs, 0.1)(v)
    assert float((expected - 0.1 * v).norm()) > 1e-6  # the Fisher part is not trivial
    torch.testing.assert_close(analytic(v), expected, rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------- encoders


def test_dict_encoder_matches_gymnasium_flatten(float64):
    enc = make_encoder(DICT)
    assert isinstance(enc, DictEncoder) and enc.out_dim == 7
    DICT.seed(3)
    samples = [DICT.sample() for _ in range(4)]
    expected = torch.as_tensor(np.stack([gym.spaces.flatten(DICT, s) for s in samples]))
    got = enc(_stack_dict(DICT, samples))
    torch.testing.assert_close(got, expected.to(got.dtype))
    torch.testing.assert_close(enc(expected), expected)  # already flattened: unchanged


def test_encoders_are_chosen_by_the_space():
    assert isinstance(make_encoder(gym.spaces.Box(-1, 1, (3, 2))), FlattenEncoder)
    assert isinstance(make_encoder(gym.spaces.Discrete(4, start=2)), OneHotEncoder)
    for shape in [(4, 84, 84), (84, 84, 3), (84, 84)]:
        image = gym.spaces.Box(0, 255, shape, dtype=np.uint8)
        assert isinstance(make_encoder(image, cnn_features=8), NatureCNN)
        assert isinstance(make_encoder(image, kind="flatten"), FlattenEncoder)
    # float pixels or other bounds are not taken for an image unless asked for
    floats = gym.spaces.Box(0.0, 1.0, (4, 84, 84))
    assert isinstance(make_encoder(floats), FlattenEncoder)
    assert isinstance(make_encoder(floats, kind="cnn", cnn_features=8), NatureCNN)
    with pytest.raises(ValueError, match="too small for the Nature CNN"):
        make_encoder(gym.spaces.Box(0, 255, (3, 20, 20), dtype=np.uint8))
    with pytest.raises(ValueError, match="needs an image Box"):
        make_encoder(gym.spaces.Box(-1, 1, (3,)), kind="cnn")
    with pytest.raises(ValueError, match="unknown encoder"):
        make_encoder(floats, kind="resnet")
    with pytest.raises(ValueError, match="unsupported observation space"):
        make_encoder(gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))))
    with pytest.raises(ValueError, match="Dict entry 'a'"):
        make_encoder(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}))


def test_one_hot_encoder_respects_start():
    enc = OneHotEncoder(gym.spaces.Discrete(3, start=-1))
    assert enc(torch.tensor([-1.0, 1.0])).tolist() == [[1, 0, 0], [0, 0, 1]]


def test_nature_cnn_reads_channels_last_and_first_alike():
    torch.manual_seed(0)
    first = NatureCNN(gym.spaces.Box(0, 255, (3, 40, 36), dtype=np.uint8), features=8)
    last = NatureCNN(gym.spaces.Box(0, 255, (40, 36, 3), dtype=np.uint8), features=8)
    assert first.channels_first and not last.channels_first
    last.load_state_dict(first.state_dict())
    img_chw = torch.randint(0, 256, (2, 3, 40, 36), dtype=torch.uint8)
    torch.testing.assert_close(first(img_chw), last(img_chw.permute(0, 2, 3, 1)))


def test_mlp_policy_keeps_its_parameter_names():
    box = gym.spaces.Box(-1.0, 1.0, (3,))
    """Checkpoints of MLP policies stay loadable, and the updater's parameter order holds."""
    box = gym.spaces.Box(-1.0, 1.0, (3,))
    names = [n for n, _ in MLPPolicy(box, gym.spaces.Box(-1.0, 1.0, (2,))).named_parameters()]
    layers = [f"net.{i}.{w}" for i in (0, 2, 4) for w in ("weight", "bias")]
    assert names == ["log_std", *layers]
    assert [n for n, _ in MLPValue(box).named_parameters()] == layers
    assert not any(n.startswith("encoder") for n, _ in MLPPolicy(IMAGE, box).named_parameters())
    names = [n for n, _ in Policy(IMAGE, box, cnn_features=8).named_parameters()]
    assert names[0] == "log_std" and names[1].startswith("encoder.conv")


# --------------------------------------------------------------------------- shapes

OBS_SPACES = {
    "box": gym.spaces.Box(-1.0, 1.0, (3,)),
    "box2d": gym.spaces.Box(-1.0, 1.0, (2, 3)),
    "dict": DICT,
    "discrete": gym.spaces.Discrete(4),
    "image_chw": IMAGE,
    "image_hwc": gym.spaces.Box(0, 255, (36, 36, 3), dtype=np.uint8),
    "image_hw": gym.spaces.Box(0, 255, (36, 36), dtype=np.uint8),
}
ALL_ACTIONS = {
    "discrete": (gym.spaces.Discrete(3), (), torch.long),
    "multi_discrete": (ACTION_SPACES["multi_discrete"], (3,), torch.long),
    "multi_binary": (ACTION_SPACES["multi_binary"], (4,), torch.float32),
    "box": (gym.spaces.Box(-1.0, 1.0, (2,)), (2,), torch.float32),
}


@pytest.mark.parametrize("obs_kind", sorted(OBS_SPACES))
@pytest.mark.parametrize("act_kind", sorted(ALL_ACTIONS))
def test_policy_and_value_shapes(obs_kind, act_kind):
    act_space, act_shape, act_dtype = ALL_ACTIONS[act_kind]
    obs_space = OBS_SPACES[obs_kind]
    policy = Policy(obs_space, act_space, hidden_sizes=(8,), cnn_features=16)
    value = ValueFunction(obs_space, hidden_sizes=(8,), cnn_features=16)
    obs = _batch(obs_space, 5)
    dist = policy(obs)
    a = dist.sample()
    assert a.shape == (5, *act_shape) and a.dtype == act_dtype
    assert dist.mode.shape == (5, *act_shape)
    assert dist.log_prob(a).shape == (5,) and dist.entropy().shape == (5,)
    assert kl_divergence(dist, policy(obs)).shape == (5,)
    assert value(obs).shape == (5,)
    for action in a.numpy():
        assert act_space.contains(to_env_action(act_space, action))


def test_unsupported_action_spaces_are_clear_errors():
    box = gym.spaces.Box(-1.0, 1.0, (3,))
    for space in [
        gym.spaces.MultiBinary((2, 2)),
        gym.spaces.MultiDiscrete([[2, 3], [4, 5]]),
        gym.spaces.Box(-1.0, 1.0, (2, 2)),
        gym.spaces.Tuple((gym.spaces.Discrete(2),)),
    ]:
        with pytest.raises(ValueError, match="unsupported action space"):
            Policy(box, space)
        with pytest.raises(ValueError, match="unsupported action space"):
            check_action_space(space)


def test_actions_are_stored_and_handed_to_the_env_in_the_spaces_dtype():
    md = gym.spaces.MultiDiscrete([3, 4], start=[1, -2])
    assert action_dtype(md) == torch.long and action_numpy_dtype(md) is np.int64
    batch = np.array([[0, 0], [2, 3]])
    assert to_env_action(md, batch).tolist() == [[1, -2], [3, 1]]
    assert all(md.contains(a) for a in to_env_action(md, batch))
    d = gym.spaces.Discrete(3, start=5)
    assert to_env_action(d, np.array([0, 2])).tolist() == [5, 7]
    mb = gym.spaces.MultiBinary(3)
    bits = to_env_action(mb, np.array([1.0, 0.0, 1.0], dtype=np.float32))
    assert bits.dtype == np.int8 and mb.contains(bits)
    assert action_numpy_dtype(mb) is np.float32
    box = gym.spaces.Box(-1.0, 1.0, (2,))
    assert to_env_action(box, np.array([[3.0, -0.5]])).tolist() == [[1.0, -0.5]]
    assert observation_dtype(IMAGE, normalized=False) is np.uint8
    assert observation_dtype(IMAGE, normalized=True) is np.float32
    assert observation_dtype(box, normalized=False) is np.float32


# --------------------------------------------------------------------------- a step on each


class SpacesEnv(gym.Env):
    """Observations sampled from any space; a reward for actions near a fixed target:
    index 0 (Discrete, each MultiDiscrete component), all ones (MultiBinary), 0.5 (Box).
    Episodes are truncated after 8 steps."""

    def __init__(
        self, observation_space: gym.Space, action_space: gym.Space, render_mode: None = None
    ) -> None:
        self.observation_space, self.action_space = observation_space, action_space
        self.render_mode = render_mode
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        a = np.asarray(action, dtype=np.float64)
        if isinstance(self.action_space, gym.spaces.Box):
            reward = -float(np.square(a - 0.5).sum())
        elif isinstance(self.action_space, gym.spaces.MultiBinary):
            reward = float(a.mean())
        else:
            reward = float((a == 0).mean())
        self._t += 1
        return self.observation_space.sample(), reward, False, self._t >= 8, {}


@pytest.mark.parametrize(
    ("obs_kind", "act_kind"),
    [
        ("box", "multi_discrete"),
        ("dict", "multi_binary"),
        ("discrete", "box"),
        ("image_chw", "discrete"),
    ],
)
def test_one_trust_region_step_on_collected_experience(obs_kind, act_kind):
    torch.manual_seed(0)
    obs_space, act_space = OBS_SPACES[obs_kind], ALL_ACTIONS[act_kind][0]
    envs = gym.vector.SyncVectorEnv([lambda: SpacesEnv(obs_space, act_space)] * 4)
    policy = Policy(obs_space, act_space, hidden_sizes=(16,), cnn_features=32)
    obs_l, act_l, rew_l = [], [], []
    obs, _ = envs.reset(seed=0)
    for _ in range(16):
        obs_t = _to_tensors(obs)
        with torch.no_grad():
            action = policy(obs_t).sample()
        obs_l.append(obs_t), act_l.append(action)
        env_action = np.stack([to_env_action(act_space, a) for a in action.numpy()])
        obs, rew, _, _, _ = envs.step(env_action)
        rew_l.append(torch.as_tensor(rew, dtype=torch.float32))
    envs.close()
    obs_B, act_B, rew_B = _cat(obs_l), torch.cat(act_l), torch.cat(rew_l)
    adv_B = (rew_B - rew_B.mean()) / (rew_B.std() + 1e-8)
    with torch.no_grad():
        old = policy(obs_B)

    def closure():
        new = policy(obs_B)
        ratio = (new.log_prob(act_B) - old.log_prob(act_B)).exp()
        return -(ratio * adv_B).mean(), kl_divergence(old, new).mean()

    before = flat_params(list(policy.parameters()))
    updater = TrustRegionUpdater(policy.parameters(), max_kl=0.01, fvp="analytic")
    stats = updater.step(closure, dist_fn=module_distribution_fn(policy, obs_B))
    assert stats.accepted and 0 < stats.kl <= 0.01 and stats.improvement > 0
    assert float((flat_params(list(policy.parameters())) - before).abs().max()) > 1e-4


def _to_tensors(obs):
    if isinstance(obs, dict):
        return {k: _to_tensors(v) for k, v in obs.items()}
    return torch.as_tensor(obs)


def _cat(batches):
    if isinstance(batches[0], dict):
        return {k: _cat([b[k] for b in batches]) for k in batches[0]}
    return torch.cat(batches)
