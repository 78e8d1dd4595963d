"""Finite networks of a `.arch` file: the `torch.nn.Module` in the NTK parameterisation whose
infinite-width kernels ntkc computes (`network`), their Monte Carlo NNGP and empirical NTK
(`empirical`), and full-batch gradient descent on the squared loss (`train`). From a compiled
kernel: `k.network(width, seed)` and `k.empirical(x1, x2, width=, n_nets=)`; see docs/finite.md."""
from .network import FiniteNetwork, axis_geometry, network
from .empirical import EmpiricalKernels, empirical_kernels
from .train import Trajectory, train

__all__ = ["EmpiricalKernels", "FiniteNetwork", "Trajectory", "axis_geometry", "empirical_kernels", "network",
           "train"]
