"""The MLP on the scalar engine, the array engine and torch: same parameters, same batches and
masks, same losses and gradients; inverted dropout's expectation; bad configurations."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mathllm.mlp import (MLPConfig, ScalarMLP, ScratchMLP, TorchMLP, TrainConfig, dropout_mask, init_params,
                         inverted_dropout, make_spirals)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


def _data(n=120, classes=3, seed=0):
    return make_spirals(n, classes, 0.2, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cfg, tcfg", [
    (MLPConfig((2, 16, 16, 3), "tanh"), TrainConfig(steps=40, lr=0.5, batch_size=32, seed=1)),
    (MLPConfig((2, 32, 3), "relu"), TrainConfig(steps=40, lr=0.2, weight_decay=1e-2, batch_size=200)),
    (MLPConfig((2, 24, 24, 3), "relu", dropout=0.3), TrainConfig(steps=40, lr=0.3, weight_decay=1e-3, batch_size=50, seed=2)),
    (MLPConfig((2, 8, 8, 8, 3), "tanh", dropout=0.1), TrainConfig(steps=30, lr=1.0, batch_size=16, seed=3)),
])
def test_scratch_and_torch_train_identically(cfg, tcfg):
    X, y = _data()
    params = init_params(cfg, torch.Generator().manual_seed(0))
    scratch, reference = ScratchMLP(cfg, params), TorchMLP(cfg, params)
    ours, theirs = scratch.fit(X, y, tcfg), reference.fit(X, y, tcfg)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    for p, q in zip(scratch.params, reference.parameters()):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-9, atol=1e-11)
    assert ours[-1] < ours[0]  # it learned something


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_scalar_engine_matches_torch(activation):
    cfg = MLPConfig((2, 5, 3), activation)
    X, y = _data(n=12)
    params = init_params(cfg, torch.Generator().manual_seed(4))
    scalar, reference = ScalarMLP(cfg, params), TorchMLP(cfg, params)
    loss = scalar.loss(X, y)
    loss.backward()
    t_loss = F.cross_entropy(reference(X), y)
    t_loss.backward()
    assert loss.data == pytest.approx(t_loss.item(), rel=1e-13)
    for g, p in zip(scalar.grads(), reference.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-11, atol=1e-13)
    tcfg = TrainConfig(steps=4, lr=0.5, weight_decay=0.01, batch_size=12)
    np.testing.assert_allclose(ScalarMLP(cfg, params).fit(X, y, tcfg), TorchMLP(cfg, params).fit(X, y, tcfg),
                               rtol=1e-12)


def test_init_params_shapes_and_init():
    cfg = MLPConfig((4, 10, 3), "relu")
    params = init_params(cfg, torch.Generator().manual_seed(0))
    assert [tuple(p.shape) for p in params] == [(10, 4), (10,), (3, 10), (3,)]
    assert all(p.dtype == torch.float64 for p in params)
    assert params[0].abs().max() <= np.sqrt(6 / 4) and params[1].abs().sum() == 0  # Kaiming bound, zero bias


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_inverted_dropout_keeps_the_expectation(p):
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-2, 3, 50, dtype=torch.float64)
    n = 20000
    samples = torch.stack([inverted_dropout(x, p, g) for _ in range(200)])  # (200, 50)
    mask = dropout_mask((n,), p, g)
    assert set(mask.unique().tolist()) <= {0.0, 1 / (1 - p)}
    assert mask.mean().item() == pytest.approx(1.0, abs=5 * np.sqrt(p / (1 - p) / n))  # E[mask] = 1
    assert (mask == 0).double().mean().item() == pytest.approx(p, abs=5 * np.sqrt(p * (1 - p) / n))
    sem = x.abs() * np.sqrt(p / (1 - p) / 200) + 1e-12
    assert ((samples.mean(0) - x).abs() <= 5 * sem).all()
    assert torch.equal(inverted_dropout(x, p, g, training=False), x)  # identity at test time
    # torch's F.dropout is the same scheme: same support and the same scale
    t = F.dropout(torch.ones(n, dtype=torch.float64), p)
    assert set(t.unique().tolist()) <= {0.0, 1 / (1 - p)}


def test_make_spirals():
    X, y = make_spirals(300, 3, 0.1, generator=torch.Generator().manual_seed(0))
    assert X.shape == (300, 2) and y.shape == (300,) and X.dtype == torch.float64
    assert torch.bincount(y).tolist() == [100, 100, 100]
    assert X.norm(dim=1).max() < 1.0
    X2, y2 = make_spirals(3000, 3, 0.1, flip=0.3, generator=torch.Generator().manual_seed(0))
    clean = torch.arange(3000) % 3
    wrong = (y2 != clean).double().mean().item()
    assert wrong == pytest.approx(0.3 * 2 / 3, abs=0.03)  # a flipped label lands on a wrong class 2/3 of the time


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"activation must be one of \('tanh', 'relu'\), got 'gelu'"):
        MLPConfig((2, 3), "gelu")
    with pytest.raises(ValueError, match=r"at least two positive ints .* got \(2,\)"):
        MLPConfig((2,))
    with pytest.raises(ValueError, match=r"dropout must be a finite number in \[0, 1\), got 1.0"):
        MLPConfig((2, 3), dropout=1.0)
    with pytest.raises(ValueError, match=r"lr must be a finite number in \(0, inf\), got -0.1"):
        TrainConfig(lr=-0.1)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\), got 1.5"):
        dropout_mask((3,), 1.5)
    with pytest.raises(ValueError, match="ScalarMLP has no dropout"):
        ScalarMLP(MLPConfig((2, 3, 2), dropout=0.5), init_params(MLPConfig((2, 3, 2))))
    cfg = MLPConfig((2, 4, 3))
    model = ScratchMLP(cfg, init_params(cfg))
    X, y = _data(n=9)
    with pytest.raises(ValueError, match=r"need X \(N, 2\) and y \(N,\), got X \(9, 3\)"):
        model.fit(torch.ones(9, 3, dtype=torch.float64), y, TrainConfig(steps=1))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\), got range \[0, 5\]"):
        model.fit(X, torch.tensor([0, 1, 2, 5, 0, 1, 2, 0, 1]), TrainConfig(steps=1))
    with pytest.raises(ValueError, match=r"flip must be a finite number in \[0, 1\], got 1.5"):
        make_spirals(10, flip=1.5)
    with pytest.raises(ValueError, match="classes must be an int >= 2, got 1"):
        make_spirals(10, classes=1)


def test_hostile_input_gets_a_clear_error():
    """Issue 15 (the API fuzz test): a number where the config goes gave AttributeError ("'float' object
    has no attribute 'sizes'"), dropout_mask(-1, p) torch's "negative dimension", make_spirals(nan)
    torch's "unsupported range", and an infinite lr passed ``lr > 0``."""
    cfg = MLPConfig((2, 4, 3))
    params = init_params(cfg)
    for cls in (ScratchMLP, TorchMLP, ScalarMLP):
        with pytest.raises(TypeError, match="cfg must be an MLPConfig, got float"):
            cls(0.5, params)
        with pytest.raises(TypeError, match=r"params must be a list \[W_1, b_1, ..., W_L, b_L\] of 4 tensors"):
            cls(cfg, params[:2])
        with pytest.raises(ValueError, match=r"params\[W_2\] must have shape \(3, 4\)"):
            cls(cfg, [params[0], params[1], params[2].T, params[3]])
    with pytest.raises(TypeError, match="cfg must be an MLPConfig, got NoneType"):
        init_params(None)
    with pytest.raises(ValueError, match="sizes must be at least two positive ints"):
        MLPConfig(3.0)
    with pytest.raises(ValueError, match=r"shape must be an int or a tuple of ints >= 0, got -1"):
        dropout_mask(-1, 0.5)
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\), got nan"):
        dropout_mask((3,), float("nan"))
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got float"):
        inverted_dropout(0.5, 0.5)
    with pytest.raises(ValueError, match="n must be an int >= 3, got nan"):
        make_spirals(float("nan"))
    with pytest.raises(ValueError, match=r"lr must be a finite number in \(0, inf\), got inf"):
        TrainConfig(lr=float("inf"))
    assert dropout_mask(5, 0.5, torch.Generator().manual_seed(0)).shape == (5,)  # an int shape, as torch.rand takes
