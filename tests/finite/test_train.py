"""Full-batch gradient descent of finite networks (`ntkc.finite.train`) against the predictions
of `ntkc.predict`, where the two must agree exactly.

A network whose trainable parameters enter linearly (everything frozen but the readout dense)
has a constant empirical NTK Theta, so gradient descent with step lr on 1/2 sum ||g - y||^2
moves its centred outputs exactly as g(s + 1) = g(s) - lr Theta (g_train(s) - y): the
prediction `gradient_descent(Theta, Theta_*, y, s, lr)` of the same network to rounding. That
ties three conventions together: the loss is summed (not averaged), time counts steps of size
lr, and frozen layers stay put. Each broken on purpose makes the check fail.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ntkc
import ntkc.learn.predict as predict_module
from ntkc.finite.empirical import _ntk
from ntkc.finite.train import train
from ntkc.predict import gradient_descent, gradient_flow
from support.checks import images

LINEAR_IN_PARAMS = """input height=6 width=5 channels=2
conv w_std=1.4 b_std=0.2 trainable=false
relu
avgpool size=2 stride=1
conv size=3 stride=2 trainable=false
erf
gap
dense w_std=1.2 b_std=0.3
"""
STEPS, RECORD = 25, (0, 1, 7, 25)


def _setup():
    k = ntkc.compile(LINEAR_IN_PARAMS)
    x = torch.as_tensor(images(14, (6, 5, 2), seed=21))
    x_train, x_test = x[:10], x[10:]
    y = torch.as_tensor(np.eye(3)[np.arange(10) % 3] - 0.1)
    net = k.network(32, seed=4, out_dim=3, dtype=torch.float64)
    theta = _ntk(net, x_train, None).numpy()
    theta_test = _ntk(net, x_test, x_train).numpy()
    lr = 1.0 / np.linalg.eigvalsh(theta)[-1]
    return k, net, x_train, x_test, y, theta, theta_test, lr


def _mismatch(net, x_train, x_test, y, theta, theta_test, lr, lr_trained=None):
    """max |trained - predicted| / max |predicted| over the recorded steps, test and train."""
    traj = train(net, x_train, y, STEPS, lr if lr_trained is None else lr_trained, RECORD, x_test)
    want_test = gradient_descent(theta, theta_test, y.numpy(), list(RECORD), lr)
    want_train = gradient_descent(theta, theta, y.numpy(), list(RECORD), lr)
    scale = np.abs(want_test).max()
    return max(np.abs(traj.test - want_test).max(), np.abs(traj.train - want_train).max()) / scale, traj


def test_training_a_network_linear_in_its_parameters_is_exactly_gradient_descent():
    k, net, x_train, x_test, y, theta, theta_test, lr = _setup()
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not p.requires_grad}
    err, traj = _mismatch(net, x_train, x_test, y, theta, theta_test, lr)
    assert err < 1e-10, err
    assert np.abs(traj.test[-1]).max() > 0.1  # it moved: the check is not of zeros
    assert traj.loss[-1] < 0.7 * traj.loss[0]
    assert np.allclose(traj.train[0], 0) and np.allclose(traj.test[0], 0)  # centred: g(0) = 0
    for n, p in net.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} moved"


def test_a_wrong_time_scaling_fails_it(monkeypatch):
    """Three ways to get time wrong, each caught: a trainer whose loss is a mean (lr / n per
    step), continuous flow in place of the discrete steps at this lr, and a flow that ignores lr."""
    k, net, x_train, x_test, y, theta, theta_test, lr = _setup()
    state = {n: p.detach().clone() for n, p in net.state_dict().items()}
    err, _ = _mismatch(net, x_train, x_test, y, theta, theta_test, lr, lr_trained=lr / len(x_train))
    assert err > 0.1, err
    net.load_state_dict(state)
    monkeypatch.setattr(predict_module, "descent_factor", predict_module.flow_factor)
    err, _ = _mismatch(net, x_train, x_test, y, theta, theta_test, lr)
    assert err > 0.01, err
    net.load_state_dict(state)
    monkeypatch.setattr(predict_module, "descent_factor",
                        lambda w, s, lr: predict_module.flow_factor(w, s, 1.0))
    err, _ = _mismatch(net, x_train, x_test, y, theta, theta_test, lr)
    assert err > 0.1, err


def test_a_trainer_that_forgets_frozen_layers_fails_it():
    k, net, x_train, x_test, y, theta, theta_test, lr = _setup()
    for p in net.parameters():
        p.requires_grad_(True)  # what a network() without the frozen-layer rule would train
    err, _ = _mismatch(net, x_train, x_test, y, theta, theta_test, lr)
    assert err > 1e-3, err


def test_uncentred_training_starts_at_f0_and_chunks_do_not_change_it():
    k, net, x_train, x_test, y, theta, theta_test, lr = _setup()
    state = {n: p.detach().clone() for n, p in net.state_dict().items()}
    a = train(net, x_train, y, 5, lr, (0, 5), x_test, centre=False)
    with torch.no_grad():
        net.load_state_dict(state)
        f0 = net(x_test).numpy()
    np.testing.assert_allclose(a.test[0], f0, rtol=0, atol=1e-12)
    net.load_state_dict(state)
    b = train(net, x_train, y, 5, lr, (0, 5), x_test, centre=False, batch=3)
    np.testing.assert_allclose(b.test, a.test, rtol=1e-10, atol=1e-12)
    # and the uncentred outputs are the centred ones plus the linear evolution of f0
    want = f0 + gradient_descent(theta, theta_test, (y.numpy() - a.train[0]), 5, lr)
    np.testing.assert_allclose(a.test[1], want, rtol=0, atol=1e-9 * np.abs(want).max())


def test_continuous_and_discrete_predictions_agree_for_small_steps():
    _, _, _, _, y, theta, theta_test, lr = _setup()
    small = lr / 200
    d = gradient_descent(theta, theta_test, y.numpy(), 2000, small)
    f = gradient_flow(theta, theta_test, y.numpy(), 2000, small)
    assert np.abs(d - f).max() <= 0.01 * np.abs(f).max()
