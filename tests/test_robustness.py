"""Tests for mathllm.robustness: exact answers on affine models, brute force on a tiny GPT."""
import pytest
import torch

from mathllm.robustness import (deepfool, embedding_offset, first_order_margins, flip_norm_along, hotflip,
                                last_logits, margin, shrink, substitution_margins)
from mathllm.transformer import GPT, GPTConfig

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


class Affine(torch.nn.Module):
    """Logits at the last position are an affine function of the flattened input embeddings."""

    def __init__(self, V, T, C, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.token_embedding = torch.nn.Embedding(V, C)
        self.head = torch.nn.Linear(T * C, V)

    def forward(self, idx):
        B, T = idx.shape
        z = self.head(self.token_embedding(idx).reshape(B, -1))            # (B, T*C) -> (B, V)
        return z[:, None].expand(B, T, -1), None


def _gpt(seed=0, V=13, T=8):
    torch.manual_seed(seed)
    return GPT(GPTConfig.tiny(vocab_size=V, block_size=T)).eval()


def test_embedding_offset_of_a_substitution_is_the_substituted_input():
    model = _gpt()
    idx = torch.randint(0, 13, (8,))
    E = model.token_embedding.weight.detach()
    delta = torch.zeros(8, E.shape[1])
    delta[3] = E[5] - E[idx[3]]
    with torch.no_grad(), embedding_offset(model, delta):
        shifted = model(idx[None])[0]
    swapped = idx.clone()
    swapped[3] = 5
    with torch.no_grad():
        torch.testing.assert_close(shifted, model(swapped[None])[0], atol=1e-5, rtol=1e-5)
        assert len(model.token_embedding._forward_hooks) == 0         # the hook is removed afterwards


@pytest.mark.parametrize("V,T,C,seed", [(2, 4, 3, 0), (5, 3, 4, 1), (12, 6, 8, 2)])
def test_deepfool_is_exact_on_an_affine_model(V, T, C, seed):
    model = Affine(V, T, C, seed).eval()
    idx = torch.randint(0, V, (T,), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        z = last_logits(model, idx[None])[0]
    k0 = int(z.argmax())
    W = model.head.weight.detach()                                     # (V, T*C)
    dist = min(float((z[k0] - z[k]) / (W[k] - W[k0]).norm()) for k in range(V) if k != k0)
    res = deepfool(model, idx, candidates=V, overshoot=1e-4, refine=False)
    assert res.success and res.iterations == 1 and res.original == k0 != res.adversarial
    assert res.norm == pytest.approx(dist * (1 + 1e-4), rel=1e-3)      # the distance to the nearest boundary
    assert res.relative_norm == pytest.approx(res.norm / float(model.token_embedding.weight.detach()[idx].norm()), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deepfool_flips_a_gpt_and_random_directions_need_more(seed):
    model = _gpt(seed)
    idx = torch.randint(0, 13, (8,), generator=torch.Generator().manual_seed(seed))
    res = deepfool(model, idx)
    assert res.success
    with torch.no_grad(), embedding_offset(model, res.delta):
        assert int(last_logits(model, idx[None]).argmax()) == res.adversarial != res.original
    g = torch.Generator().manual_seed(seed)
    random_norms = [flip_norm_along(model, idx, torch.randn(res.delta.shape, generator=g), 30 * res.norm)
                    for _ in range(3)]
    assert sorted(random_norms)[1] > 2 * res.norm                     # the median random direction is far worse


def test_shrink_keeps_the_flip_and_never_grows():
    model = _gpt(3)
    idx = torch.randint(0, 13, (8,), generator=torch.Generator().manual_seed(3))
    raw = deepfool(model, idx, overshoot=0.5, refine=False)
    small = shrink(model, idx, raw.delta)
    assert small.norm() <= raw.delta.norm() + 1e-6
    with torch.no_grad(), embedding_offset(model, small):
        assert int(last_logits(model, idx[None]).argmax()) != raw.original
    assert torch.equal(shrink(model, idx, torch.zeros_like(raw.delta)), torch.zeros_like(raw.delta))


def test_substitution_margins_against_a_loop():
    model = _gpt(4, V=7, T=5)
    idx = torch.randint(0, 7, (5,), generator=torch.Generator().manual_seed(4))
    got = substitution_margins(model, idx, batch_size=6)
    with torch.no_grad():
        k0 = int(last_logits(model, idx[None]).argmax())
        for i in range(5):
            for v in range(7):
                x = idx.clone()
                x[i] = v
                assert float(got[i, v]) == pytest.approx(float(margin(last_logits(model, x[None]), k0)), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_order_margins_are_exact_for_a_binary_affine_model(seed):
    model = Affine(2, 6, 4, seed).eval()
    idx = torch.randint(0, 2, (6,), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(first_order_margins(model, idx), substitution_margins(model, idx), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_hotflip_finds_the_best_single_substitution_of_an_affine_model(seed):
    model = Affine(2, 6, 4, seed).eval()
    idx = torch.randint(0, 2, (6,), generator=torch.Generator().manual_seed(seed))
    exact = substitution_margins(model, idx)
    exact[torch.arange(6), idx] = float("inf")
    res = hotflip(model, idx, max_flips=1, beam=1)
    assert res.margins[0] == pytest.approx(float(exact.min()), abs=1e-5)
    assert res.success == (float(exact.min()) < 0)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_hotflip_on_a_gpt_changes_only_the_reported_positions(seed):
    model = _gpt(seed)
    idx = torch.randint(0, 13, (8,), generator=torch.Generator().manual_seed(seed))
    allowed = torch.ones(13, dtype=torch.bool)
    allowed[0] = False
    res = hotflip(model, idx, max_flips=4, beam=8, allowed=allowed)
    changed = (res.ids != idx).nonzero().flatten().tolist()
    assert sorted(changed) == sorted(res.positions) and len(res.positions) == len(res.margins) <= 4
    assert 0 not in res.ids[changed].tolist()
    with torch.no_grad():
        z = last_logits(model, res.ids[None])
        assert float(margin(z, res.original)) == pytest.approx(res.margins[-1], abs=1e-5)
        assert res.success == (int(z.argmax()) != res.original)


def test_bad_inputs_raise():
    model = _gpt()
    with pytest.raises(ValueError, match="eval"):
        deepfool(model.train(), torch.zeros(8, dtype=torch.long))
    model.eval()
    with pytest.raises(TypeError, match="token_embedding"):
        deepfool(torch.nn.Linear(2, 2).eval(), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        hotflip(model, torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        hotflip(model, torch.full((8,), 13))
    with pytest.raises(ValueError, match="max_flips"):
        hotflip(model, torch.zeros(8, dtype=torch.long), max_flips=0)
    with pytest.raises(ValueError, match="delta"):
        with embedding_offset(model, torch.zeros(8, 5)):
            pass


def test_margin_and_last_logits_refuse_bad_input():
    """Issue 15: ``margin`` with a label past the vocabulary raised IndexError, on a 1-d tensor "too many
    indices", on a number "'float' object has no attribute 'clone'"; ``last_logits`` of a tensor
    "'Tensor' object is not callable". Now each names its parameter."""
    z = torch.tensor([[1.0, 3.0, 2.0]])
    assert float(margin(z, 1)) == 1.0 and float(margin(z, 0)) == -2.0  # 3 - 2 and 1 - 3, by hand
    with pytest.raises(ValueError, match=r"label must be a token id in \[0, V\).*got label 4"):
        margin(z, 4)
    with pytest.raises(ValueError, match=r"label must be .* got label 0 for logits of shape \(2, 1\)"):
        margin(torch.zeros(2, 1), 0)  # one logit: no rival, the margin would be +inf
    with pytest.raises(ValueError, match=r"logits must have shape \(B, V\)"):
        margin(torch.zeros(3), 0)
    with pytest.raises(TypeError, match="logits must be a torch.Tensor, got float"):
        margin(1.0, 0)
    with pytest.raises(ValueError, match="label must be an int >= 0, got 1.5"):
        margin(z, 1.5)
    with pytest.raises(TypeError, match="model must be a Module, got Tensor"):
        last_logits(torch.zeros(2, 3), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"model must map \(B, T\) ids to \(B, T, V\) logits.*got \(1, 5\)"):
        last_logits(torch.nn.Embedding(4, 5), torch.zeros(1, dtype=torch.long))
