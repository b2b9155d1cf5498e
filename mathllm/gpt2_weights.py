"""Load OpenAI's GPT-2 weights, as Hugging Face publishes them, into :class:`mathllm.transformer.GPT`.

The two models compute the same function; only names and one layout differ. Hugging Face's
GPT-2 keeps OpenAI's ``Conv1D`` layers, which store a weight as (in, out) and compute
``x W + b``; ``torch.nn.Linear`` stores (out, in) and computes ``x W^T + b``. So the four
matrices ``c_attn``, ``c_proj`` (attention), ``c_fc`` and ``c_proj`` (MLP) are transposed and
everything else is copied. The whole mapping is :func:`convert_gpt2_state_dict`.

References: Radford et al. 2019; Hugging Face ``transformers`` ``modeling_gpt2.py`` (the names);
nanoGPT's ``GPT.from_pretrained`` (the list of transposed weights).
Leaves out: the tokenizer (use ``transformers.GPT2TokenizerFast`` or ``tiktoken``), GPT-2's
attention-dropout and other training-only settings. ``transformers`` is imported only by
:func:`load_pretrained_gpt2`, which downloads, and :func:`pretrained_or_none`, which chapters call to use
GPT-2 where the budget and the network allow it; nothing else here touches the network.

Book: :doc:`/notebooks/11_transformer`
"""
from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Mapping

import torch

from . import runtime
from .checks import check_positive, check_positive_int
from .transformer import GPT, GPTConfig

# Hugging Face's activation names -> ours ("gelu_new" is the tanh approximation GPT-2 was trained with)
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
GPT2_MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # 124M, 355M, 774M, 1.5B parameters
_CONFIG_FIELDS = ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd")  # what gpt2_config reads


def _check_state_dict(sd_hf) -> None:
    if not isinstance(sd_hf, Mapping):
        raise TypeError(f"sd_hf must be a state dict (a mapping of names to tensors), got {type(sd_hf).__name__}")
    for k, v in sd_hf.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise TypeError(f"sd_hf must map str names to tensors, got {type(k).__name__} {k!r}: {type(v).__name__}"[:200])


def gpt2_config(hf_config) -> GPTConfig:
    """The :class:`~mathllm.transformer.GPTConfig` equal to a ``transformers.GPT2Config``.

    Raises ValueError for settings this model does not have (another LayerNorm epsilon, an
    activation other than GELU or ReLU, attention scaled by layer index).
    """
    missing = [k for k in _CONFIG_FIELDS if not hasattr(hf_config, k)]
    if missing:
        raise TypeError(f"hf_config must be a transformers.GPT2Config (or have its fields {', '.join(_CONFIG_FIELDS)}), "
                        f"got {type(hf_config).__name__} without {', '.join(missing)}")
    act = getattr(hf_config, "activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(f"activation_function={act!r} has no counterpart: expected one of {sorted(ACTIVATIONS)}")
    eps = getattr(hf_config, "layer_norm_epsilon", 1e-5)
    if eps != 1e-5:
        raise ValueError(f"layer_norm_epsilon={eps} is not supported: mathllm's LayerNorm uses 1e-5, as GPT-2")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if getattr(hf_config, flag, False):
            raise ValueError(f"{flag}=True changes attention and is not supported")
    if not getattr(hf_config, "scale_attn_weights", True):
        raise ValueError("scale_attn_weights=False removes the 1/sqrt(hs) scaling and is not supported")
    n_inner = getattr(hf_config, "n_inner", None)  # None: 4 n_embd, as ours
    return GPTConfig(vocab_size=hf_config.vocab_size, block_size=hf_config.n_positions, n_layer=hf_config.n_layer,
                     n_head=hf_config.n_head, n_embd=hf_config.n_embd, dropout=0.0, bias=True,
                     mlp=ACTIVATIONS[act], norm="layernorm", prenorm=True, positions="learned", tie_weights=True,
                     d_ff=None if n_inner in (None, 4 * hf_config.n_embd) else n_inner)


def convert_gpt2_state_dict(sd_hf: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """Rename (and transpose where needed) a Hugging Face GPT-2 state dict into :class:`GPT`'s names.

    Accepts the keys of ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn.weight``, ...) or of
    ``GPT2Model`` (``h.0.attn.c_attn.weight``, ...); the masks some versions store as buffers
    (``attn.bias``, ``attn.masked_bias``) are dropped. Every other key must be used, or a
    ValueError names the ones left over.
    """
    _check_state_dict(sd_hf)
    check_positive_int(n_layer, "n_layer")
    sd = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in sd_hf.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    out: dict[str, torch.Tensor] = {}

    def take(src: str, dst: str, transpose: bool = False) -> None:
        if src not in sd:
            raise ValueError(f"the GPT-2 state dict has no {src!r}")
        w = sd.pop(src)
        out[dst] = w.t().contiguous() if transpose else w  # Conv1D (in, out) -> Linear (out, in)

    take("wte.weight", "token_embedding.weight")
    take("wpe.weight", "position_embedding.weight")
    for i in range(n_layer):
        h, b = f"h.{i}.", f"blocks.{i}."
        for ours, theirs in (("norm_attn", "ln_1"), ("norm_mlp", "ln_2")):
            take(h + theirs + ".weight", b + ours + ".weight")
            take(h + theirs + ".bias", b + ours + ".bias")
        for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                             ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            take(h + theirs + ".weight", b + ours + ".weight", transpose=True)
            take(h + theirs + ".bias", b + ours + ".bias")
    take("ln_f.weight", "norm_f.weight")
    take("ln_f.bias", "norm_f.bias")
    head = sd.pop("lm_head.weight", None)  # tied to wte in GPT-2: the same values
    if head is not None and not torch.equal(head, out["token_embedding.weight"]):
        raise ValueError("lm_head.weight differs from wte.weight: this GPT-2 is not weight-tied")
    if sd:
        raise ValueError(f"unused keys in the GPT-2 state dict: {sorted(sd)[:8]}")
    out["lm_head.weight"] = out["token_embedding.weight"]
    return out


def load_gpt2_state_dict(model: GPT, sd_hf: dict[str, torch.Tensor]) -> GPT:
    """Copy a Hugging Face GPT-2 state dict into ``model`` (in place) and return it.

    ``model.config`` must be GPT-2-compatible (see :func:`gpt2_config`); shapes are checked by
    ``load_state_dict(strict=True)``.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a mathllm GPT, got {type(model).__name__}")
    _check_state_dict(sd_hf)
    c = model.config
    want = dict(bias=True, norm="layernorm", prenorm=True, positions="learned", tie_weights=True)
    wrong = {k: getattr(c, k) for k, v in want.items() if getattr(c, k) != v}
    if wrong:
        raise ValueError(f"the model's config is not GPT-2-compatible: need {want}, got {wrong}")
    model.load_state_dict(convert_gpt2_state_dict(sd_hf, c.n_layer), strict=True)  # copies into the tied tensor
    return model


def load_pretrained_gpt2(name_or_path: str | os.PathLike = "gpt2") -> GPT:
    """Build :class:`GPT` from a Hugging Face GPT-2 checkpoint: ``"gpt2"`` (124M), ``"gpt2-medium"``, ...,
    or a local folder written by ``save_pretrained``. Needs ``transformers`` and, for a name, the network
    the first time (``transformers`` caches the download, by default in ``~/.cache/huggingface``).
    Also :meth:`GPT.from_pretrained <mathllm.transformer.GPT.from_pretrained>`.
    """
    is_name = isinstance(name_or_path, str) and name_or_path in GPT2_MODELS
    if not is_name and not os.path.isdir(name_or_path):
        raise ValueError(f"{str(name_or_path)!r} is neither one of {GPT2_MODELS} nor a folder written by save_pretrained")
    try:
        from transformers import GPT2LMHeadModel  # optional dependency, imported only here
    except ImportError as e:
        raise ImportError("loading GPT-2's weights needs transformers: pip install 'mathllm[hf]'") from e
    try:
        hf = GPT2LMHeadModel.from_pretrained(name_or_path)
    except OSError as e:
        if not is_name:
            raise
        raise OSError(f"could not load {name_or_path!r} ({e}). Offline, load it once online (transformers then keeps "
                      f"it in its cache; HF_HUB_OFFLINE=1 reads only the cache), or pass the path of a folder "
                      f"written by GPT2LMHeadModel.save_pretrained.") from e
    model = GPT(gpt2_config(hf.config))
    return load_gpt2_state_dict(model, hf.state_dict()).eval()


# ---------------------------------------------------------------------------- GPT-2 where the budget allows
# what a chapter needs of a named GPT-2: the weights, and the tokenizer's files for GPT2TokenizerFast
PRETRAINED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt")


def _hub_reachable(endpoint: str, timeout: float) -> str | None:
    """None when a TCP connection to the Hub's host opens within ``timeout`` seconds, else why not.
    One plain connection: huggingface_hub's own requests retry for about 25 s before giving up."""
    url = urllib.parse.urlsplit(endpoint)
    if urllib.request.getproxies().get(url.scheme):  # behind a proxy only the Hub client's own request can tell
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        return f"{url.hostname}:{port} cannot be reached ({e})"
    return None


def pretrained_or_none(name: str | os.PathLike = "gpt2", *, budget: str | None = None,
                       timeout: float = 5.0) -> tuple[GPT | None, str]:
    """``(GPT.from_pretrained(name), line)`` when the budget is full and the weights can be had, else ``(None, line)``.

    ``line`` is one sentence for the chapter to print: which model it uses and why. ``name`` is one of
    ``GPT2_MODELS`` or a folder written by ``save_pretrained``. ``budget`` defaults to
    :func:`mathllm.runtime.budget`; on the small budget nothing is imported and the network is not touched.
    A named model is read from the Hugging Face cache when all of ``PRETRAINED_FILES`` are there
    (no network); otherwise, unless ``HF_HUB_OFFLINE`` is set, the Hub is probed with one connection of
    at most ``timeout`` seconds and the files are downloaded (about 550 MB for ``"gpt2"``). After a model
    is returned, ``GPT2TokenizerFast.from_pretrained(name, local_files_only=True)`` loads its tokenizer.

    Book: :doc:`/notebooks/11_transformer`
    """
    budget = runtime.budget() if budget is None else budget
    if budget not in runtime.BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(runtime.BUDGETS)} or None, got {budget!r}")
    check_positive(timeout, "timeout")
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be one of {GPT2_MODELS} or a folder written by save_pretrained, "
                        f"got {type(name).__name__}")
    is_name = isinstance(name, str) and name in GPT2_MODELS
    if not is_name and not os.path.isdir(name):
        raise ValueError(f"name must be one of {GPT2_MODELS} or a folder written by save_pretrained, got {str(name)!r}")
    small = "the small model trained above"
    if budget == "small":
        return None, f"{small}: budget small (MATHLLM_BUDGET=full uses GPT-2)"
    try:
        import huggingface_hub  # comes with transformers
        import transformers  # noqa: F401  (GPT.from_pretrained needs it)
    except ImportError:
        return None, f"{small}: GPT-2 needs transformers (pip install 'mathllm[hf]')"
    if not is_name:
        return GPT.from_pretrained(name), f"GPT-2 from the folder {os.fspath(name)}"
    from huggingface_hub import constants  # read now, not at import: HF_HUB_OFFLINE and HF_ENDPOINT as set
    cached = [huggingface_hub.try_to_load_from_cache(name, f) for f in PRETRAINED_FILES]
    if all(isinstance(c, str) for c in cached):
        return GPT.from_pretrained(os.path.dirname(cached[0])), f"GPT-2 {name} from the Hugging Face cache"
    offline = f"{small}: GPT-2's weights are not available offline"
    if constants.HF_HUB_OFFLINE:
        return None, f"{offline} (HF_HUB_OFFLINE is set and {name!r} is not in the Hugging Face cache)"
    why = _hub_reachable(constants.ENDPOINT, timeout)
    if why is not None:
        return None, f"{offline} ({why}; run once online, or set HF_ENDPOINT to a mirror)"
    try:
        paths = [huggingface_hub.hf_hub_download(name, f, etag_timeout=timeout) for f in PRETRAINED_FILES]
    except OSError as e:  # LocalEntryNotFoundError, OfflineModeIsEnabled, connection errors
        return None, f"{offline} (the download failed: {str(e)[:200]})"
    return GPT.from_pretrained(os.path.dirname(paths[0])), f"GPT-2 {name} from the Hugging Face Hub"
