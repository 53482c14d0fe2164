"""The linear probe equals scikit-learn called directly: same (layer, C) selection, same predictions."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from audiossl.downstream.probe import C_GRID, ProbeFit, ProbeHead, fit_probe, pool_layers


def toy_features(seed: int, count: int, classes: int = 3):
    """(N, L=3, D=6): class information only in layer 1, noise in layers 0 and 2; large offsets and scales."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=count)
    x = rng.normal(size=(count, 3, 6)) * np.array([1.0, 50.0, 0.01, 7.0, 1.0, 3.0]) + 100.0
    x[:, 1, :classes] += 60.0 * np.eye(classes)[y]
    return x, y


def test_probe_equals_scikit_learn_called_directly():
    train_x, train_y = toy_features(0, 90)
    dev_x, dev_y = toy_features(1, 40)
    test_x, _ = toy_features(2, 50)
    fit = fit_probe(train_x, train_y, dev_x, dev_y)
    # the reference: a plain loop over layers and C with scikit-learn, ties to the smaller C then the lower layer
    best = None
    for layer in range(3):
        for C in sorted(C_GRID):
            scaler = StandardScaler().fit(train_x[:, layer])
            model = LogisticRegression(C=C, max_iter=2000, random_state=0).fit(
                scaler.transform(train_x[:, layer]), train_y
            )
            accuracy = (model.predict(scaler.transform(dev_x[:, layer])) == dev_y).mean()
            if best is None or (accuracy, -C, -layer) > best[0]:
                best = ((accuracy, -C, -layer), layer, C, scaler, model)
    _, layer, C, scaler, model = best
    assert (fit.layer, fit.C) == (layer, C) and fit.layer == 1
    assert fit.dev_accuracy == best[0][0]
    np.testing.assert_array_equal(fit.predict(test_x), model.predict(scaler.transform(test_x[:, layer])))
    np.testing.assert_allclose(fit.coef, model.coef_, rtol=1e-6)
    assert len(fit.grid) == 3 * len(C_GRID)


def test_two_classes_and_no_dev_data():
    train_x, train_y = toy_features(3, 60, classes=2)
    test_x, _ = toy_features(4, 30, classes=2)
    fit = fit_probe(train_x, train_y)  # no dev data: the last layer, C = 1
    assert (fit.layer, fit.C, fit.dev_accuracy) == (2, 1.0, None)
    scaler = StandardScaler().fit(train_x[:, 2])
    model = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(scaler.transform(train_x[:, 2]), train_y)
    np.testing.assert_array_equal(fit.predict(test_x), model.predict(scaler.transform(test_x[:, 2])))


def test_probe_head_round_trips_through_a_state_dict():
    train_x, train_y = toy_features(5, 60)
    fit = fit_probe(train_x, train_y, *toy_features(6, 30))
    state = ProbeHead(fit).state_dict()
    head = ProbeHead()
    head.load_state_dict(state)
    test_x, _ = toy_features(7, 20)
    np.testing.assert_array_equal(head.predict(test_x), fit.predict(test_x))
    assert isinstance(ProbeFit.from_arrays(fit.to_arrays()), ProbeFit)


def test_pool_layers_is_the_mean_over_valid_frames():
    layers = [torch.randn(2, 5, 3) for _ in range(2)]
    pooled = pool_layers(layers, torch.tensor([5, 2]))
    assert pooled.shape == (2, 2, 3)
    np.testing.assert_allclose(pooled[1, 0], layers[0][1, :2].double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(pooled[0, 1], layers[1][0].double().mean(0).numpy(), rtol=1e-6)
