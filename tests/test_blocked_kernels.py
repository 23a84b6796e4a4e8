"""The blocked message-passing kernels against hippynn's own plain-torch kernels."""

import pytest
import torch

from hipcg.models import blocked_kernels as bk
from hipcg.models.hipnn import HipnnConfig, build_network

from hippynn import custom_kernels  # noqa: E402  (after hipcg set hippynn's kernel choice)
from hippynn.custom_kernels import env_pytorch


def _graph(n_atoms=23, n_pairs=140, seed=0):
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, n_atoms - 3, (n_pairs,), generator=g)   # the last atoms have no pairs
    second = torch.randint(0, n_atoms, (n_pairs,), generator=g)
    return first, second, g


@pytest.mark.parametrize("seed", [0, 1])
def test_kernels_equal_hippynn_plain_torch(seed):
    first, second, g = _graph(seed=seed)
    n, n_sens, n_feat = 23, 7, 5
    sense = torch.randn(len(first), n_sens, generator=g, dtype=torch.float64)
    feat = torch.randn(n, n_feat, generator=g, dtype=torch.float64)
    env = torch.randn(n, n_sens, n_feat, generator=g, dtype=torch.float64)
    args = (first, second)
    assert torch.allclose(bk.envsum(sense, feat, *args), env_pytorch.envsum(sense, feat, *args), atol=1e-12)
    assert torch.allclose(bk.sensesum(env, feat, *args), env_pytorch.sensesum(env, feat, *args), atol=1e-12)
    assert torch.allclose(bk.featsum(env, sense, *args), env_pytorch.featsum(env, sense, *args), atol=1e-12)
    # atoms without pairs get zeros, not garbage
    assert bk.envsum(sense, feat, *args)[-3:].abs().max() == 0


def test_kernels_without_pairs():
    none = torch.zeros(0, dtype=torch.long)
    feat = torch.randn(4, 3)
    assert bk.envsum(torch.zeros(0, 2), feat, none, none).shape == (4, 2, 3)
    assert bk.sensesum(torch.zeros(4, 2, 3), feat, none, none).shape == (0, 2)
    assert bk.featsum(torch.zeros(4, 2, 3), torch.zeros(0, 2), none, none).abs().sum() == 0


def test_envsum_gradients():
    first, second, g = _graph(n_atoms=9, n_pairs=30, seed=3)
    sense = torch.randn(30, 4, generator=g, dtype=torch.float64, requires_grad=True)
    feat = torch.randn(9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(bk.envsum, (sense, feat, first, second))


def test_hipnnquad_same_outputs_and_gradients_with_either_kernel():
    """A whole HipnnQuad network (features and their gradients with respect to the pair
    vectors, as force training needs) is the same with the blocked kernels."""
    torch.manual_seed(0)
    cfg = HipnnConfig(network="HipnnQuad", n_features=8, n_sensitivities=4, dist_soft_min=1.0,
                      dist_soft_max=4.0, cutoff=5.0, n_interaction_layers=2, n_atom_layers=1)
    net = build_network(cfg, 3).double()
    x = torch.rand(12, 3, dtype=torch.float64) * 6.0
    i, j = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    vec_all = x[j] - x[i]
    keep = (i != j) & (vec_all.norm(dim=-1) < cfg.cutoff)
    first, second = i[keep], j[keep]
    inputs = torch.nn.functional.one_hot(torch.arange(12) % 3, 3).double()

    def run(kernel):
        xs = x.clone().requires_grad_(True)
        vec = xs[second] - xs[first]
        with bk.use_kernels(kernel):
            layers = net(inputs, first, second, vec.norm(dim=-1), -vec)
        total = sum((h ** 2).sum() for h in layers[1:])
        (grad,) = torch.autograd.grad(total, xs)
        return total.detach(), grad

    e_raw, g_raw = run("_pytorch_raw")
    e_blk, g_blk = run(bk.BLOCKED)
    assert torch.allclose(e_blk, e_raw, rtol=1e-10)
    assert torch.allclose(g_blk, g_raw, rtol=1e-8, atol=1e-10)
    assert g_raw.abs().max() > 0


def test_use_kernels_restores_the_previous_choice():
    before = custom_kernels.CUSTOM_KERNELS_ACTIVE
    with pytest.raises(RuntimeError):
        with bk.use_kernels():
            assert custom_kernels.CUSTOM_KERNELS_ACTIVE == bk.BLOCKED
            assert custom_kernels.envsum is bk.envsum
            raise RuntimeError("boom")
    assert custom_kernels.CUSTOM_KERNELS_ACTIVE == before
    assert custom_kernels.envsum is not bk.envsum
