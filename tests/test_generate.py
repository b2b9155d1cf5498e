"""mathllm.generate: the filters against Hugging Face's logits warpers, sampling, and cache == no cache."""
import pytest
import torch

from mathllm.generate import generate, sample_next, top_k_logits, top_p_logits
from mathllm.transformer import GPT, GPTConfig

warpers = pytest.importorskip("transformers.generation.logits_process", reason="transformers is not installed")


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_top_k_matches_transformers(k):
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(k))
    ref = warpers.TopKLogitsWarper(top_k=k)(None, logits.clone())
    ours = top_k_logits(logits, k)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    assert (~torch.isinf(ours)).sum(-1).tolist() == [k] * 4
    torch.testing.assert_close(ours[~torch.isinf(ours)], logits[~torch.isinf(ours)], rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_top_p_matches_transformers(p, scale):
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(int(100 * p))) * scale
    ref = warpers.TopPLogitsWarper(top_p=p)(None, logits.clone())
    ours = top_p_logits(logits, p)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    kept = torch.softmax(logits, -1).masked_fill(torch.isinf(ours), 0)
    assert torch.all(kept.sum(-1) >= p - 1e-6)  # the kept set holds at least p
    # and it is the smallest such set: dropping its least likely token leaves less than p
    smallest = kept.masked_fill(kept == 0, 2.0).amin(-1)
    assert torch.all(kept.sum(-1) - smallest < p + 1e-6)


def test_sampling_follows_the_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]]).expand(20000, 5)
    g = torch.Generator().manual_seed(0)
    for tau in (1.0, 0.5, 2.0):
        draws = sample_next(logits, temperature=tau, generator=g)
        freq = torch.bincount(draws, minlength=5).float() / len(draws)
        torch.testing.assert_close(freq, torch.softmax(logits[0] / tau, -1), atol=0.015, rtol=0)
    draws = sample_next(logits, top_k=2, generator=g)
    assert set(draws.tolist()) == {0, 1}
    p0 = torch.softmax(logits[0], -1)[0].item()  # 0.563
    assert set(sample_next(logits, top_p=p0 - 0.01, generator=g).tolist()) == {0}
    assert set(sample_next(logits, top_p=p0 + 0.01, generator=g).tolist()) == {0, 1}


def test_greedy_is_argmax_and_low_temperature_approaches_it():
    logits = torch.randn(8, 30, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1))
    assert torch.equal(sample_next(logits, top_k=1, generator=torch.Generator().manual_seed(2)), logits.argmax(-1))
    assert torch.equal(sample_next(logits, temperature=1e-4, generator=torch.Generator().manual_seed(3)),
                       logits.argmax(-1))


def test_bad_sampling_arguments():
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="top_k must be a positive int, got 0"):
        sample_next(logits, top_k=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 1.5"):
        sample_next(logits, top_p=1.5)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1"):
        sample_next(logits, temperature=-1)
    with pytest.raises(ValueError, match=r"logits must have shape \(B, V\)"):
        sample_next(torch.zeros(5))


CONFIGS = [dict(), dict(positions="rope", mlp="swiglu", norm="rmsnorm"), dict(positions="sinusoidal", prenorm=False),
           dict(tie_weights=False, bias=False)]


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.0), dict(temperature=0.8, top_k=5),
                                      dict(temperature=1.2, top_p=0.9)])
def test_kv_cache_gives_identical_tokens(kw, sampling):
    """Past the context (4 + 40 > 32 tokens) too, where the window slides and the cache is refilled."""
    torch.manual_seed(0)
    m = GPT(GPTConfig.tiny(block_size=32, **kw)).double().eval()
    with torch.no_grad():  # sharper distributions than the small init gives, so greedy has clear winners
        for p in m.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    idx = torch.randint(0, 65, (3, 4))
    outs = [m.generate(idx, 40, use_cache=c, generator=torch.Generator().manual_seed(7), **sampling) for c in (True, False)]
    assert outs[0].shape == (3, 44) and torch.equal(outs[0][:, :4], idx)
    assert torch.equal(outs[0], outs[1])


def test_generate_is_reproducible_and_checks_inputs():
    m = GPT(GPTConfig.tiny()).eval()
    idx = torch.zeros(2, 1, dtype=torch.long)
    a = generate(m, idx, 10, generator=torch.Generator().manual_seed(5))
    b = generate(m, idx, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(generate(m, idx, 0), idx)
    with pytest.raises(ValueError, match="at least one token"):
        generate(m, torch.zeros(2, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0, got -1"):
        generate(m, idx, -1)
    with pytest.raises(ValueError, match=r"token id 70, outside the vocabulary \[0, 65\)"):
        generate(m, torch.tensor([[70]]), 3)


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -1.0, "1"])
def test_sample_next_refuses_bad_temperatures(temperature):
    with pytest.raises((ValueError, TypeError), match="temperature must be"):
        sample_next(torch.zeros(2, 5), temperature)


@pytest.mark.parametrize("temperature", [1e-39, 1e-300, 5e-324])
def test_a_tiny_temperature_is_greedy(temperature):
    """logits / 1e-39 overflows to inf and softmax(inf) is nan; dividing after subtracting the max cannot."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=g)
    logits[0, :2] = float("-inf")  # masked tokens stay impossible
    assert torch.equal(sample_next(logits, temperature, generator=g), logits.argmax(-1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_sample_next_refuses_nan_and_inf_logits(bad):
    logits = torch.zeros(2, 5)
    logits[1, 3] = bad
    with pytest.raises(ValueError, match="logits hold NaN or \\+inf"):
        sample_next(logits, 1.0)
    with pytest.raises(ValueError, match="logits hold NaN or \\+inf"):
        sample_next(logits, 0.0)


def test_sample_next_refuses_a_row_with_no_possible_token():
    logits = torch.zeros(2, 5)
    logits[0] = float("-inf")
    with pytest.raises(ValueError, match="a row of logits is all -inf"):
        sample_next(logits, 1.0)
