"""tools/budget_cost.py: its catalogue follows the notebooks' pick() calls, its GPT FLOPs are what torch
counts, and book/status.md shows the table it prints."""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import pathlib
import sys
from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mathllm.train_config import PRESETS
from mathllm.transformer import GPT, GPTConfig, param_count

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
spec = importlib.util.spec_from_file_location("mathllm_budget_cost_tool", ROOT / "tools" / "budget_cost.py")
budget_cost = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = budget_cost  # dataclasses look their module up while the class is created
spec.loader.exec_module(budget_cost)


def test_every_notebook_has_an_entry():
    assert sorted(ch.notebook for ch in budget_cost.CHAPTERS.values()) == [p.name for p in NOTEBOOKS]
    assert all(ch.notebook.startswith(key + "_") for key, ch in budget_cost.CHAPTERS.items())


@pytest.mark.parametrize("key", sorted(budget_cost.CHAPTERS))
def test_the_sizes_are_the_notebooks_pick_calls(key):
    """Every pick() call of the notebook is in the catalogue, literally, and nothing else is: a chapter that
    changes a size, or adds one, fails here until the catalogue (and so the table) follows."""
    ch = budget_cost.CHAPTERS[key]
    nb = json.loads((ROOT / "notebooks" / ch.notebook).read_text())
    assert budget_cost.pick_calls(nb) == budget_cost.catalogue_calls(ch), (
        f"{ch.notebook}: its pick() calls and the catalogue in tools/budget_cost.py differ; update the entry, "
        f"rerun the tool and paste its table into book/status.md")
    work = ch.work()
    assert work and all(w.on in ("device", "host") for w in work)
    for w in work:
        for t in (w.cpu_seconds(), w.cpu_seconds(quiet=True), w.t4_seconds()):
            assert math.isfinite(t) and t > 0, (w.what, t)


def test_a_changed_size_is_caught():
    """The comparison can fail: the tour with its full step count raised no longer matches its entry."""
    ch = budget_cost.CHAPTERS["01"]
    nb = json.loads((ROOT / "notebooks" / ch.notebook).read_text())
    assert budget_cost.pick_calls(nb) == budget_cost.catalogue_calls(ch)
    changed = copy.deepcopy(nb)
    for cell in changed["cells"]:
        cell["source"] = [line.replace("full=2000)", "full=4000)") for line in cell["source"]]
    assert budget_cost.pick_calls(changed) != budget_cost.catalogue_calls(ch)
    added = copy.deepcopy(nb)
    added["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                           "source": ["%time n = 3\n", "m = runtime.pick(small=1, full=2)\n"]})
    assert budget_cost.pick_calls(added) == sorted(budget_cost.catalogue_calls(ch) + ["runtime.pick(small=1, full=2)"])


def test_full_values_are_read_from_the_calls():
    """Known answers: literals, a list, an expression with GPTConfig, len(text) and the preset of chapter 12."""
    full = {key: ch.full() for key, ch in budget_cost.CHAPTERS.items()}
    assert full["01"]["steps"] == 2000 and full["03"]["N_SAMPLES"] == 2_000_000
    assert full["13"]["WIDTHS"] == [32, 64, 128, 256]
    assert full["15"]["MODEL"] == GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128)
    assert full["11"]["n_chars"] == 1_115_394                 # Tiny Shakespeare, one token per character
    assert full["12"]["config"].model == PRESETS["shakespeare_char"]().model


def test_gpt_training_flops_match_torchs_flop_counter():
    """One training workload of the catalogue (chapter 16's character GPT: 3 layers, C = 64, T = 64) at batch 2:
    the tool's FLOPs for one step against FlopCounterMode counting a forward and backward pass.

    With attn_impl="manual" the counter sees every matmul, attention's Q K^T and P V included, and the two
    agree exactly (6 N + 12 L T C per token, N the matmul weights, the tied head counted once); 1% leaves room
    for a torch version that counts some small extra op. (With the fused "sdpa" kernel on the CPU this torch
    counts no attention FLOPs at all, so it would undercount by 12 L T C / (6 N + 12 L T C), 14% here.)
    The plain 6 N D rule with N = all parameters is 10% low for this model: it leaves out attention's
    12 L T C per token (14% of the count) and counts the position table, biases and norm gains, which
    multiply nothing (+4%); the embedding, tied to the head, is the head's matmul and counts once either way.
    """
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=3, n_head=4, n_embd=64)
    assert any("C=64 L=3 T=64 V=65" in w.how for w in budget_cost.CHAPTERS["16"].work())   # it is in the catalogue
    batch = 2
    work = budget_cost.gpt_training("one step", cfg, steps=1, batch=batch)
    torch.manual_seed(0)
    model = GPT(replace(cfg, attn_impl="manual"))
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    counted = counter.get_total_flops()
    assert math.isclose(work.flops, counted, rel_tol=0.01), (work.flops, counted)
    plain = 6 * param_count(cfg) * batch * cfg.block_size
    assert abs(plain / counted - 1) > 0.05                     # why the tool uses the package's counter


def test_trainer_run_counts_the_evaluations():
    """Known answer for chapter 12's full run, nanoGPT's shakespeare_char: 5000 steps of 64 x 256 tokens, and
    an evaluation at step 0 and every 250 steps (21) of 200 batches on each of the two splits."""
    run = budget_cost.trainer_run("preset", PRESETS["shakespeare_char"]())
    per_token = 70_928_640                                     # 6 (6 x 12 x 384^2 + 65 x 384) + 12 x 6 x 256 x 384
    trained, evaluated = 5000 * 64 * 256, 21 * 2 * 200 * 64 * 256
    assert math.isclose(run.flops, per_token * (trained + evaluated / 3), rel_tol=1e-12)
    assert run.steps == 5000 + 21 * 2 * 200 / 3


def test_the_status_page_shows_the_tools_table():
    """book/status.md carries the table the tool prints, unchanged: rerun the tool and paste when this fails."""
    lines = (ROOT / "book" / "status.md").read_text().splitlines()
    header = budget_cost.table().splitlines()[0]
    assert header in lines, "book/status.md has no table of the full budget's cost"
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    assert "\n".join(lines[start:end]) == budget_cost.table()


@pytest.mark.parametrize("key", sorted(budget_cost.CHAPTERS))
def test_each_chapter_opens_with_its_running_time(key):
    """Under the title and the Colab link, each chapter states its small budget's measured time and the full
    budget's estimates from this catalogue (issue 17), word for word: a changed size or throughput assumption
    fails here until the line is written again with `running_time_line`."""
    ch = budget_cost.CHAPTERS[key]
    first = "".join(json.loads((ROOT / "notebooks" / ch.notebook).read_text())["cells"][0]["source"])
    lines = [line for line in first.splitlines() if line.startswith("*Running time:")]
    assert lines == [budget_cost.running_time_line(key)], (ch.notebook, lines)
    assert first.index("[Open in Colab]") < first.index("*Running time:")
