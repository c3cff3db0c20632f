"""Independent references for the LocalNorm tests: tolerances, random BN/heads, the grouping rule.

Shared by tests/test_nn_*.py (imported by name: pytest puts tests/ on sys.path). Nothing
here uses lncli's own grouping code, so the tests compare the layer with a separate reading
of its documented rules.
"""

from __future__ import annotations

import torch
from torch import nn

from lncli.nn import LocalNorm2d

# dtype -> (rtol, atol), as kornia does.
TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-10, 1e-12)}
SEEDS = range(10)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, dtype: torch.dtype = torch.float32) -> None:
    rtol, atol = TOL[dtype]
    err = (actual.detach() - expected.detach()).abs().max().item() if actual.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=f"{what}: max abs error {err:.3g}")


def random_bn(c: int, gen: torch.Generator) -> nn.BatchNorm2d:
    """A BatchNorm2d with non-trivial affine and running statistics."""
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=gen))
        bn.running_mean.copy_(torch.randn(c, generator=gen))
        bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
        bn.num_batches_tracked.fill_(7)
    return bn


def random_heads(ln: LocalNorm2d, gen: torch.Generator) -> LocalNorm2d:
    with torch.no_grad():
        ln.head_weight.copy_(torch.rand(ln.head_weight.shape, generator=gen) + 0.5)
        ln.head_bias.copy_(torch.randn(ln.head_bias.shape, generator=gen))
    return ln


def groups_of(n: int, g: int, grouping: str) -> list[list[int]]:
    """The documented grouping rule, written out independently of the layer."""
    m, r = divmod(n, g)
    if grouping == "consecutive":
        groups = [list(range(k * g, (k + 1) * g)) for k in range(m)]
    else:
        groups = [list(range(k, m * g, m)) for k in range(m)]
    if r:
        groups.append(list(range(m * g, n)))
    return groups
