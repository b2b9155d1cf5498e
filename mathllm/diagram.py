"""A labelled diagram of the decoder-only transformer (GPT), drawn with matplotlib.

The picture follows :class:`~mathllm.transformer.GPT` with pre-norm blocks, bottom to top: token
ids, token and position embeddings, L x [LayerNorm, causal self-attention, residual addition,
LayerNorm, MLP, residual addition], the final LayerNorm, the unembedding (tied to the token
embedding) and the softmax, each arrow labelled with the shape of the tensor it carries: (B, T),
(B, T, C), ``(B, T, |V|)``. Drawn from code, so it renders offline, in the book and in Colab.
Reference: the figure 1 of Vaswani et al. (2017), redrawn for a decoder-only, pre-norm model.

Leaves out: dropout, the key-value cache, and the inside of attention (drawn in the attention chapter).

Book: :doc:`/notebooks/11_transformer`
"""
from __future__ import annotations

from dataclasses import dataclass

from .checks import check_instance, check_positive_int, check_str


@dataclass(frozen=True)
class Stage:
    """One box of the diagram: its label, the shape of the tensor it outputs, and its kind
    ("io" for inputs and outputs, "layer" for a computation, "add" for a residual addition)."""

    label: str
    shape: str
    kind: str = "layer"


def gpt_stages(n_layer: int | str = "L") -> tuple[list[Stage], list[Stage], list[Stage]]:
    """The boxes below, inside and above the repeated block, bottom to top.

    ``n_layer``: the number of blocks, or a symbol such as ``"L"``; it appears in the block's title.
    """
    if isinstance(n_layer, str):
        check_str(n_layer, "n_layer")
    else:
        check_positive_int(n_layer, "n_layer")
    below = [Stage("token ids", "(B, T)", "io"),
             Stage("token embedding E[idx]\n+ position embedding P[0:T]", "(B, T, C)")]
    block = [Stage("LayerNorm", "(B, T, C)"),
             Stage("causal multi-head self-attention", "(B, T, C)"),
             Stage("+", "(B, T, C)", "add"),
             Stage("LayerNorm", "(B, T, C)"),
             Stage("MLP: C -> 4C -> C", "(B, T, C)"),
             Stage("+", "(B, T, C)", "add")]
    above = [Stage("final LayerNorm", "(B, T, C)"),
             Stage(r"unembedding $E^\top$ (tied)", r"(B, T, $|\mathcal{V}|$) logits"),
             Stage("softmax", r"(B, T, $|\mathcal{V}|$) next-token probabilities", "io")]
    return below, block, above


_COLOURS = {"io": "#dde8f5", "layer": "#f5f0dc", "add": "white"}


def draw_gpt(ax=None, n_layer: int | str = "L"):
    """Draw the decoder-only transformer on ``ax`` (a new figure if None); return the figure.

    Every arrow carries its tensor's shape; the residual connections are drawn around the two
    sublayers of the block, and the block is framed with "``n_layer`` x".
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    from matplotlib.axes import Axes

    if ax is not None:
        check_instance(ax, Axes, "ax")
    below, block, above = gpt_stages(n_layer)
    stages = below + block + above
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 10))
    step, x0, width = 1.0, 0.0, 3.4
    ys = [i * step for i in range(len(stages))]
    for i, (stage, y) in enumerate(zip(stages, ys)):
        if stage.kind == "add":
            ax.add_patch(plt.Circle((x0, y), 0.2, facecolor="white", edgecolor="black", zorder=3))
            ax.text(x0, y, "+", ha="center", va="center", fontsize=14, zorder=4)
        else:
            ax.add_patch(FancyBboxPatch((x0 - width / 2, y - 0.28), width, 0.56, boxstyle="round,pad=0.02",
                                        facecolor=_COLOURS[stage.kind], edgecolor="black", zorder=2))
            ax.text(x0, y, stage.label, ha="center", va="center", fontsize=9, zorder=3)
        # the arrow up to the next stage (or out of the top), labelled with this stage's output shape
        head = ys[i + 1] - 0.3 if i + 1 < len(stages) else y + 0.8
        ax.annotate("", xy=(x0, head), xytext=(x0, y + (0.2 if stage.kind == "add" else 0.3)),
                    arrowprops=dict(arrowstyle="->", lw=1.2))
        ax.text(x0 - 0.1, y + step / 2, stage.shape, fontsize=8, color="dimgray", va="center", ha="right")
    first = len(below)  # index of the block's first stage
    for norm_i, add_i in ((first, first + 2), (first + 3, first + 5)):  # residual: around norm and sublayer
        y_from, y_to, x_side = ys[norm_i] - 0.36, ys[add_i], x0 + width / 2 + 0.5
        ax.plot([x0, x_side, x_side], [y_from, y_from, y_to], color="C3", lw=1.5)
        ax.annotate("", xy=(x0 + 0.2, y_to), xytext=(x_side, y_to),
                    arrowprops=dict(arrowstyle="->", color="C3", lw=1.5))
        ax.text(x_side + 0.08, (y_from + y_to) / 2, "residual", color="C3", fontsize=8, rotation=90, va="center")
    top, bottom = ys[first + len(block) - 1] + 0.3, ys[first] - 0.4
    ax.add_patch(FancyBboxPatch((x0 - width / 2 - 0.35, bottom), width + 1.6, top - bottom,
                                boxstyle="round,pad=0.05", facecolor="none", edgecolor="gray", ls="--"))
    ax.text(x0 - width / 2 - 0.5, (top + bottom) / 2, f"{n_layer} x block", ha="right", va="center",
            fontsize=11, rotation=90)
    ax.set(xlim=(x0 - width / 2 - 1.2, x0 + width / 2 + 1.8), ylim=(ys[0] - 0.5, ys[-1] + 1.0), aspect="equal")
    ax.axis("off")
    ax.set_title("The decoder-only transformer (pre-norm GPT)")
    return ax.figure
