"""mathllm.gpt2_weights against transformers' GPT2LMHeadModel built from small random configs (no download)."""
import pytest
import torch

from mathllm.gpt2_weights import convert_gpt2_state_dict, gpt2_config, load_gpt2_state_dict, load_pretrained_gpt2
from mathllm.transformer import GPT, GPTConfig

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

SIZES = [dict(n_layer=1, n_head=2, n_embd=16), dict(n_layer=3, n_head=4, n_embd=48), dict(n_layer=2, n_head=6, n_embd=72)]


def _hf(seed, activation="gelu_new", **size):
    cfg = transformers.GPT2Config(vocab_size=97, n_positions=40, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  bos_token_id=None, eos_token_id=None, activation_function=activation, **size)
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # larger than the 0.02 init, so that a wrong transpose or a swap cannot hide
        for p in hf.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return hf


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_logits_match_transformers(size, activation):
    hf = _hf(0, activation, **size)
    ours = load_gpt2_state_dict(GPT(gpt2_config(hf.config)), hf.state_dict()).eval()
    assert ours.lm_head.weight is ours.token_embedding.weight
    idx = torch.randint(0, 97, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=1e-5, atol=1e-5)
        # the cached path too: logits of the last token after a cached prefix
        caches = ours.new_kv_caches()
        ours.next_logits(idx[:, :25], caches)
        torch.testing.assert_close(ours.next_logits(idx[:, 25:], caches), hf(idx).logits[:, -1], rtol=1e-5, atol=1e-5)


def test_greedy_generation_matches_transformers():
    hf = _hf(2, **SIZES[1])
    ours = load_gpt2_state_dict(GPT(gpt2_config(hf.config)), hf.state_dict()).eval()
    idx = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    ref = hf.generate(idx, max_new_tokens=20, do_sample=False, attention_mask=torch.ones_like(idx), pad_token_id=0)
    assert torch.equal(ours.generate(idx, 20, temperature=0.0), ref)


def test_the_config_maps_across():
    hf = _hf(0, **SIZES[1])
    c = gpt2_config(hf.config)
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (97, 40, 3, 4, 48)
    assert c.mlp == "gelu_tanh" and c.bias and c.tie_weights and c.prenorm and c.positions == "learned"
    assert sum(p.numel() for p in GPT(c).parameters()) == sum(p.numel() for p in hf.parameters())


def test_load_pretrained_from_a_local_folder(tmp_path):
    hf = _hf(4, **SIZES[0])
    hf.save_pretrained(tmp_path)
    ours = load_pretrained_gpt2(str(tmp_path))
    assert not ours.training
    idx = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=1e-5, atol=1e-5)


def test_mapping_renames_and_transposes():
    hf = _hf(0, **SIZES[0])
    sd = convert_gpt2_state_dict(hf.state_dict(), n_layer=1)
    w = hf.state_dict()["transformer.h.0.attn.c_attn.weight"]  # Conv1D: (in, out) = (16, 48)
    assert w.shape == (16, 48) and sd["blocks.0.attn.qkv.weight"].shape == (48, 16)
    assert torch.equal(sd["blocks.0.attn.qkv.weight"], w.t())
    assert torch.equal(sd["blocks.0.norm_attn.weight"], hf.state_dict()["transformer.h.0.ln_1.weight"])
    # GPT2Model's keys (no "transformer." prefix, no head) work too
    base = {k[len("transformer."):]: v for k, v in hf.state_dict().items() if k.startswith("transformer.")}
    assert convert_gpt2_state_dict(base, 1).keys() == sd.keys()


def test_bad_inputs_are_named():
    hf = _hf(0, **SIZES[0])
    sd = hf.state_dict()
    with pytest.raises(ValueError, match="has no 'h.0.ln_2.bias'"):
        convert_gpt2_state_dict({k: v for k, v in sd.items() if not k.endswith("h.0.ln_2.bias")}, 1)
    with pytest.raises(ValueError, match=r"unused keys.*h\.1\."):
        convert_gpt2_state_dict(_hf(0, n_layer=2, n_head=2, n_embd=16).state_dict(), 1)
    with pytest.raises(ValueError, match="not GPT-2-compatible.*'prenorm': False"):
        load_gpt2_state_dict(GPT(GPTConfig(vocab_size=97, block_size=40, n_layer=1, n_head=2, n_embd=16, prenorm=False)), sd)
    with pytest.raises(ValueError, match="layer_norm_epsilon=0.001 is not supported"):
        gpt2_config(transformers.GPT2Config(layer_norm_epsilon=1e-3))
    with pytest.raises(ValueError, match="activation_function='silu' has no counterpart"):
        gpt2_config(transformers.GPT2Config(activation_function="silu"))


# ---------------------------------------------------------------------------- GPT.from_pretrained
@pytest.mark.parametrize("size", SIZES[:2])
def test_gpt_from_pretrained_local_folder(tmp_path, size):
    """One call: a save_pretrained folder of a random small GPT2LMHeadModel -> our GPT, same logits,
    and greedy generation identical with and without the KV cache and to transformers' own."""
    hf = _hf(6, **size)
    hf.save_pretrained(tmp_path)
    ours = GPT.from_pretrained(str(tmp_path))
    assert isinstance(ours, GPT) and not ours.training
    idx = torch.randint(0, 97, (3, 40), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=1e-5, atol=1e-5)
    prompt = idx[:2, :6]
    cached = ours.generate(prompt, 24, temperature=0.0, use_cache=True)
    uncached = ours.generate(prompt, 24, temperature=0.0, use_cache=False)
    ref = hf.generate(prompt, max_new_tokens=24, do_sample=False, attention_mask=torch.ones_like(prompt), pad_token_id=0)
    assert torch.equal(cached, uncached) and torch.equal(cached, ref)


def test_from_pretrained_takes_a_path_object_and_n_inner(tmp_path):
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_layer=2, n_head=2, n_embd=16, n_inner=24,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(8)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = GPT.from_pretrained(tmp_path)
    assert ours.config.d_ff == 24 and ours.blocks[0].mlp.fc.out_features == 24
    assert ours.num_params(non_embedding=False) == sum(p.numel() for p in hf.parameters())
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=1e-5, atol=1e-5)


def test_from_pretrained_refuses_unknown_names(tmp_path):
    with pytest.raises(ValueError, match=r"'gpt3' is neither one of \('gpt2', 'gpt2-medium'"):
        GPT.from_pretrained("gpt3")
    with pytest.raises(ValueError, match="nor a folder written by save_pretrained"):
        GPT.from_pretrained(str(tmp_path / "missing"))


def test_from_pretrained_offline_says_what_to_do(monkeypatch):
    """No network and nothing cached (transformers' OSError, stubbed here): the error says how to supply the weights."""
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    monkeypatch.setattr(transformers.GPT2LMHeadModel, "from_pretrained", offline)
    with pytest.raises(OSError, match=r"could not load 'gpt2-medium' .*HF_HUB_OFFLINE=1.*save_pretrained"):
        GPT.from_pretrained("gpt2-medium")


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_d_ff_sets_the_mlp_width(mlp):
    from mathllm.layers import mlp_hidden
    from mathllm.transformer import param_count
    c = GPTConfig.tiny(mlp=mlp, d_ff=40)
    model = GPT(c)
    assert c.ff_width == 40 and all(b.mlp.fc.out_features == 40 == b.mlp.proj.in_features for b in model.blocks)
    assert param_count(c) == sum(p.numel() for p in model.parameters())
    default = GPTConfig.tiny(mlp=mlp)
    assert default.d_ff is None and default.ff_width == mlp_hidden(32, mlp) == GPT(default).blocks[0].mlp.fc.out_features
    with pytest.raises(ValueError, match="d_ff must be a positive int, got 0"):
        GPTConfig.tiny(d_ff=0)


# ---------------------------------------------------------------------------- hostile input (issue 15)
def test_wrong_types_are_named_not_attribute_errors():
    """Before issue 15 each of these was an AttributeError ('float' object has no attribute 'items',
    'vocab_size', 'config')."""
    with pytest.raises(TypeError, match="hf_config must be a transformers.GPT2Config .* got dict without vocab_size"):
        gpt2_config({"vocab_size": 50257})                            # a dict of the config, not the config
    with pytest.raises(TypeError, match=r"sd_hf must be a state dict \(a mapping of names to tensors\), got list"):
        convert_gpt2_state_dict([torch.zeros(2)], 1)
    with pytest.raises(TypeError, match="sd_hf must map str names to tensors, got str 'wte.weight': list"):
        convert_gpt2_state_dict({"wte.weight": [[0.0]]}, 1)
    with pytest.raises(ValueError, match="n_layer must be a positive int, got 0"):
        convert_gpt2_state_dict({}, 0)
    with pytest.raises(TypeError, match="model must be a mathllm GPT, got GPT2LMHeadModel"):
        load_gpt2_state_dict(_hf(0, **SIZES[0]), {})                  # the arguments the wrong way round


# ---------------------------------------------------------------------------- pretrained_or_none (issue 17)
from mathllm.gpt2_weights import PRETRAINED_FILES, pretrained_or_none  # noqa: E402


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache and no HF_HUB_OFFLINE, so that only the network could supply GPT-2."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return constants


def _no_network(*args, **kwargs):
    raise AssertionError("the network was touched")


def test_small_budget_gives_none_without_the_network(monkeypatch, empty_hub):
    import huggingface_hub
    monkeypatch.setattr("socket.create_connection", _no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_network)
    model, line = pretrained_or_none("gpt2", budget="small")
    assert model is None and line == "the small model trained above: budget small (MATHLLM_BUDGET=full uses GPT-2)"
    monkeypatch.setenv("MATHLLM_BUDGET", "small")                   # the default reads runtime.budget()
    assert pretrained_or_none("gpt2")[0] is None


def test_full_budget_with_an_unreachable_hub_gives_the_reason(monkeypatch, empty_hub):
    """Port 1 on localhost refuses at once: the real probe fails, quickly, and nothing is downloaded."""
    import time

    import huggingface_hub
    monkeypatch.setattr(empty_hub, "ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setattr("urllib.request.getproxies", dict)           # no proxy: the probe decides
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_network)
    start = time.perf_counter()
    model, line = pretrained_or_none("gpt2", budget="full", timeout=2.0)
    assert time.perf_counter() - start < 2.0                          # a refused connection, not retries
    assert model is None
    assert line.startswith("the small model trained above: GPT-2's weights are not available offline (127.0.0.1:1 "
                           "cannot be reached"), line


def test_full_budget_with_hf_hub_offline_does_not_probe(monkeypatch, empty_hub):
    monkeypatch.setattr(empty_hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("socket.create_connection", _no_network)
    model, line = pretrained_or_none("gpt2-medium", budget="full")
    assert model is None and "HF_HUB_OFFLINE is set and 'gpt2-medium' is not in the Hugging Face cache" in line


def test_full_budget_reads_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("socket.create_connection", _no_network)
    hf = _hf(10, **SIZES[1])
    hf.save_pretrained(tmp_path)
    model, line = pretrained_or_none(tmp_path, budget="full")
    assert isinstance(model, GPT) and not model.training and line == f"GPT-2 from the folder {tmp_path}"
    idx = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=1e-5, atol=1e-5)
    assert pretrained_or_none(tmp_path, budget="small")[0] is None    # the budget decides first


def test_full_budget_reads_the_cache_without_the_network(tmp_path, monkeypatch, empty_hub):
    """A model whose files sit in the Hub cache's layout (models--gpt2/snapshots/<rev>/) loads with no connection."""
    hf = _hf(12, **SIZES[0])
    snap = tmp_path / "hub" / "models--gpt2" / "snapshots" / ("0" * 40)
    hf.save_pretrained(snap)
    for f in PRETRAINED_FILES[2:]:                                    # the tokenizer's files: only their presence counts
        (snap / f).write_text("{}")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr("socket.create_connection", _no_network)
    model, line = pretrained_or_none("gpt2", budget="full")
    assert line == "GPT-2 gpt2 from the Hugging Face cache"
    idx = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=1e-5, atol=1e-5)


def test_pretrained_or_none_names_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="budget must be one of small, full or None, got 'large'"):
        pretrained_or_none("gpt2", budget="large")
    with pytest.raises(ValueError, match="timeout must be > 0, got 0"):
        pretrained_or_none("gpt2", budget="full", timeout=0)
    with pytest.raises(ValueError, match=r"name must be one of \('gpt2', .*save_pretrained, got 'gpt3'"):
        pretrained_or_none("gpt3", budget="small")
    with pytest.raises(TypeError, match="name must be one of .* got NoneType"):
        pretrained_or_none(None, budget="small")


def test_behind_a_proxy_the_hub_client_decides(monkeypatch, empty_hub):
    """A proxy (HTTPS_PROXY) hides whether the Hub is reachable from a plain socket: the download itself
    is tried, and its failure (stubbed: the Hub client's offline error) gives None and the reason."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
    monkeypatch.setattr("urllib.request.getproxies", lambda: {"https": "http://proxy.invalid:3128"})
    monkeypatch.setattr("socket.create_connection", _no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    model, line = pretrained_or_none("gpt2", budget="full")
    assert model is None and line.startswith("the small model trained above: GPT-2's weights are not available "
                                             "offline (the download failed: cannot find"), line
