"""The learned dynamics' networks: equivariance, the Gaussian NLL, the metrics' definitions."""

import numpy as np
import pytest
import torch

from hipcg.dynamics import metrics
from hipcg.dynamics.model import ChainTopology, DynamicsModelConfig, DynamicsNet, ScoreNet, gaussian_nll


def _chain(n_mono=20, n_beads=5):
    bonds = torch.stack([torch.arange(n_mono - 1), torch.arange(1, n_mono)], 1)
    beads = torch.stack([torch.arange(n_beads - 1), torch.arange(1, n_beads)], 1)
    types = torch.tensor([0, 1, 1, 0] * (n_mono // 4))
    return ChainTopology(types, bonds, torch.arange(n_mono) // (n_mono // n_beads), beads, n_beads)


@pytest.mark.parametrize("score_features", ["hipnn", "pairwise"])
def test_rotating_and_translating_the_history_rotates_the_mean_and_keeps_the_std(score_features):
    torch.manual_seed(0)
    cfg = DynamicsModelConfig(noise="correlated" if score_features == "hipnn" else "bead")
    net, score = DynamicsNet(cfg).double(), ScoreNet(cfg, score_features).double()
    topo = _chain()
    g = torch.Generator().manual_seed(1)
    hist = torch.cumsum(torch.randn(3, cfg.history + 1, topo.n_beads, 3, generator=g, dtype=torch.float64) * 2, 1)
    hist = hist + torch.arange(topo.n_beads, dtype=torch.float64)[None, None, :, None] * 8.0
    rot, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    shift = torch.tensor([10.0, -4.0, 7.0], dtype=torch.float64)
    mean, std = net(topo, hist)
    mean2, std2 = net(topo, hist @ rot.T + shift)
    assert mean.abs().max() > 1e-3  # not trivially zero
    assert torch.allclose(mean @ rot.T, mean2, atol=1e-5)
    assert torch.allclose(std, std2, atol=1e-5)
    assert std.shape == (3, topo.n_beads, topo.n_beads) and torch.all(torch.diagonal(std, dim1=1, dim2=2) > 0)
    off = std.tril(-1).abs().max()
    assert (off > 1e-4) if cfg.noise == "correlated" else (off == 0 and std.triu(1).abs().max() == 0)
    sig = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    s1, s2 = score(topo, hist[:, -1], sig), score(topo, hist[:, -1] @ rot.T + shift, sig)
    assert torch.allclose(s1 @ rot.T, s2, atol=1e-5)
    assert s1.abs().max() > 1e-4
    # a batch of different sequences (one embedding per configuration) gives each its own
    other = _chain()
    other.monomer_types = 1 - other.monomer_types
    emb = torch.stack([net.embedding(topo), net.embedding(other), net.embedding(topo)])
    mixed, _ = net(topo, hist, embedding=emb)
    alone, _ = net(other, hist[1:2])
    assert torch.allclose(mixed[0], mean[0], atol=1e-10) and torch.allclose(mixed[1], alone[0], atol=1e-10)


def test_the_nll_of_a_known_gaussian_is_minimised_by_the_true_parameters():
    g = torch.Generator().manual_seed(3)
    mu_true, sd_true = torch.tensor([0.7, -1.2, 0.3]), 0.45
    samples = mu_true + sd_true * torch.randn((20000, 3), generator=g)
    mu = torch.zeros(3, requires_grad=True)
    log_sd = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([mu, log_sd], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        loss = gaussian_nll(samples, mu.expand_as(samples), log_sd.exp().expand(len(samples)))
        loss.backward()
        opt.step()
    assert torch.allclose(mu.detach(), mu_true, atol=0.02)
    assert abs(float(log_sd.exp()) - sd_true) < 0.01
    at_true = gaussian_nll(samples, mu_true.expand_as(samples), torch.full((len(samples),), sd_true))
    for d_mu, d_sd in ((0.1, 0.0), (0.0, 0.1), (0.0, -0.1)):
        other = gaussian_nll(samples, (mu_true + d_mu).expand_as(samples), torch.full((len(samples),), sd_true + d_sd))
        assert other > at_true


def test_relaxation_times_of_an_ar1_process():
    rng = np.random.default_rng(0)
    phi, n = np.exp(-1.0 / 20.0), 200000   # exact correlation time 20 steps
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + rng.normal()
    acf = metrics.autocorrelation(x, max_lag=200)
    assert abs(metrics.exponential_time(acf, 1.0) - 20.0) < 2.0
    assert abs(metrics.integrated_time(acf, 1.0) - 20.0) < 3.0


def test_rg_and_r2():
    pos = np.array([[[0.0, 0, 0], [2.0, 0, 0]]])
    assert np.allclose(metrics.radius_of_gyration(pos, np.array([1.0, 1.0])), 1.0)
    assert metrics.r_squared([1, 2, 3], [1, 2, 3]) == 1.0
    assert metrics.r_squared([2, 2, 2], [1, 2, 3]) == 0.0


def test_bond_cap_pulls_stretched_bonds_back_and_keeps_the_centre_of_mass():
    from hipcg.dynamics.rollout import cap_bonds

    rng = np.random.default_rng(4)
    bonds = np.c_[np.arange(5), np.arange(1, 6)]
    masses = np.array([400.0, 300.0, 400.0, 400.0, 500.0, 400.0])
    x = np.cumsum(rng.normal(size=(3, 6, 3)) * 4.0, axis=1)
    x[1, 3:] += np.array([30.0, 0.0, 0.0])        # configuration 1: bond 2-3 stretched
    before = x.copy()
    limit = float(np.linalg.norm(x[[0, 2]][:, 1:] - x[[0, 2]][:, :-1], axis=-1).max()) + 1e-9
    acted = cap_bonds(x, bonds, masses, limit)
    assert acted.tolist() == [False, True, False]
    assert np.array_equal(x[[0, 2]], before[[0, 2]])
    d = np.linalg.norm(x[1, 1:] - x[1, :-1], axis=-1)
    assert d.max() <= limit * (1 + 1e-4)
    com = lambda y: (masses[:, None] * y).sum(0) / masses.sum()  # noqa: E731
    assert np.allclose(com(x[1]), com(before[1]), atol=1e-9)


def test_the_correlated_nll_is_the_multivariate_normal_log_likelihood():
    g = torch.Generator().manual_seed(8)
    batch, n = 5, 6
    raw = torch.randn((batch, n, n), generator=g, dtype=torch.float64).tril(-1) * 0.4
    tril = raw + torch.diag_embed(0.5 + torch.rand((batch, n), generator=g, dtype=torch.float64))
    mean = torch.randn((batch, n, 3), generator=g, dtype=torch.float64)
    target = torch.randn((batch, n, 3), generator=g, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(mean.transpose(1, 2), scale_tril=tril[:, None])
    log_p = mvn.log_prob(target.transpose(1, 2)).sum(-1)            # (B,): x, y, z columns
    expected = (-(log_p + 1.5 * n * np.log(2 * np.pi)) / n).mean()
    assert torch.allclose(gaussian_nll(target, mean, tril), expected, atol=1e-12)
    # a diagonal factor is the per-bead form
    diag = torch.diagonal(tril, dim1=1, dim2=2)
    assert torch.allclose(gaussian_nll(target, mean, torch.diag_embed(diag)), gaussian_nll(target, mean, diag), atol=1e-12)
