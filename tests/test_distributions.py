import math

import torch
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Independent, Normal, kl_divergence

from trpo_ng.distributions import Categorical, DiagGaussian


def test_diag_gaussian_matches_torch_independent_normal(float64):
    torch.manual_seed(0)
    loc, log_std = torch.randn(7, 3), torch.randn(3) * 0.3
    ours = DiagGaussian(loc, log_std)
    ref = Independent(Normal(loc, log_std.exp().expand_as(loc)), 1)
    x = ours.sample()
    assert x.shape == (7, 3)
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    assert torch.equal(ours.mode, loc)
    other = DiagGaussian(loc + 0.1 * torch.randn(7, 3), log_std - 0.2)
    ref_other = Independent(Normal(other.loc, other.scale), 1)
    torch.testing.assert_close(kl_divergence(ours, other), kl_divergence(ref, ref_other))


def test_categorical_kl_and_mode(float64):
    logits = torch.randn(4, 5)
    ours, ref = Categorical(logits), TorchCategorical(logits=logits)
    other = Categorical(logits + torch.randn(4, 5))
    torch.testing.assert_close(
        kl_divergence(ours, other), kl_divergence(ref, TorchCategorical(logits=other.logits))
    )
    assert torch.equal(ours.mode, logits.argmax(-1))
    actions = torch.tensor([0, 4, 2, 1])
    torch.testing.assert_close(ours.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.logits, ref.logits)
    torch.testing.assert_close(ours.probs, ref.probs)
    assert ours.batch_shape == ref.batch_shape and ours.param_shape == ref.param_shape


def _kl_hessian(make, params):
    """Hessian of KL(p(params0) || p(params)) at params = params0, over the flat params."""
    sizes = [p.numel() for p in params]
    flat0 = torch.cat([p.reshape(-1) for p in params]).detach()

    def kl(flat):
        pieces = [t.view_as(p) for t, p in zip(flat.split(sizes), params, strict=True)]
        return kl_divergence(make(*[p.detach() for p in params]), make(*pieces)).sum()

    return torch.autograd.functional.hessian(kl, flat0)


def test_categorical_fisher_metric_is_kl_hessian(float64):
    logits = torch.randn(1, 4)
    M = _kl_hessian(Categorical, [logits])
    u = torch.randn(1, 4)
    (Mu,) = Categorical(logits).fisher_product((u,))
    torch.testing.assert_close(Mu.reshape(-1), M @ u.reshape(-1))


def test_gaussian_fisher_metric_is_kl_hessian(float64):
    loc, log_std = torch.randn(1, 3), torch.tensor([[-0.4, 0.1, 0.5]])
    M = _kl_hessian(DiagGaussian, [loc, log_std])
    u_loc, u_ls = torch.randn(1, 3), torch.randn(1, 3)
    m_loc, m_ls = DiagGaussian(loc, log_std).fisher_product((u_loc, u_ls))
    expected = M @ torch.cat([u_loc.reshape(-1), u_ls.reshape(-1)])
    torch.testing.assert_close(torch.cat([m_loc.reshape(-1), m_ls.reshape(-1)]), expected)
    assert math.isclose(float(M[3, 3]), 2.0)  # the log-std block is 2 I


def test_categorical_samples_follow_the_probabilities():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, -1.0, 2.0], [5.0, -5.0, 0.0, 0.0], [0.0, 0.0, 0.0, -30.0]])
    d = Categorical(logits)
    s = d.sample((100_000,))
    assert s.shape == (100_000, 3) and s.dtype == torch.int64
    assert int(s.min()) >= 0 and int(s.max()) <= 3
    freq = torch.stack([(s == k).double().mean(0) for k in range(4)], -1)
    # 5 standard errors of a frequency at p = 1/2 over 1e5 draws is 0.008
    torch.testing.assert_close(freq, d.probs.double(), atol=0.008, rtol=0)
    assert d.sample().shape == (3,)
    certain = Categorical(torch.tensor([[-1e9, 0.0], [0.0, -1e9]])).sample((1000,))
    assert torch.equal(certain, torch.tensor([1, 0]).expand(1000, 2))
