"""Predictions of infinitely wide networks over training time, and NNGP inference.

    from ntkc.predict import gradient_flow
    f = gradient_flow(ntk_train, ntk_test_train, y_train, t=[1, 10, 100, float("inf")], lr=1.0)

The public name of `ntkc.learn.predict`, where the functions and their derivations live
(`gradient_flow`, `gradient_descent`, `GradientFlow`, `nngp_posterior`, `ntk_ensemble`).
"""
from .learn.predict import (Ensemble, GradientFlow, Posterior, gradient_descent, gradient_flow,  # noqa: F401
                            nngp_posterior, ntk_ensemble)

__all__ = ["Ensemble", "GradientFlow", "Posterior", "gradient_descent", "gradient_flow", "nngp_posterior",
           "ntk_ensemble"]
