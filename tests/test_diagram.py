"""Tests of mathllm.diagram: the GPT diagram has every stage of mathllm.transformer.GPT, in order, with shapes."""
import matplotlib

matplotlib.use("Agg")  # tests draw off-screen; never set for notebooks
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mathllm.diagram import Stage, draw_gpt, gpt_stages  # noqa: E402


def test_stages_follow_the_prenorm_gpt():
    below, block, above = gpt_stages()
    assert [s.label for s in block] == ["LayerNorm", "causal multi-head self-attention", "+",
                                        "LayerNorm", "MLP: C -> 4C -> C", "+"]
    assert below[0].shape == "(B, T)" and all(s.shape == "(B, T, C)" for s in below[1:] + block)
    assert above[0].label == "final LayerNorm" and above[-1].label == "softmax"
    assert all(r"|\mathcal{V}|" in s.shape for s in above[1:])


def test_drawing_shows_every_label_and_shape():
    fig = draw_gpt(n_layer=12)
    texts = [t.get_text() for t in fig.axes[0].texts]
    below, block, above = gpt_stages(12)
    for stage in below + block + above:
        assert stage.label in texts and stage.shape in texts, stage
    assert "12 x block" in texts and texts.count("residual") == 2
    plt.close(fig)


def test_draws_on_a_given_axis():
    fig, ax = plt.subplots()
    assert draw_gpt(ax) is fig
    plt.close(fig)


@pytest.mark.parametrize("n_layer, err", [(0, ValueError), (2.5, ValueError), (None, ValueError)])
def test_rejects_bad_n_layer(n_layer, err):
    with pytest.raises(err, match="n_layer"):
        gpt_stages(n_layer)


def test_stage_is_frozen():
    with pytest.raises(AttributeError):
        Stage("a", "b").label = "c"
