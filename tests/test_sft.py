"""Tests for mathllm.sft: prompt-masked rows against targets built by hand, the answer-only loss
against torch's F.cross_entropy(ignore_index=-100) and against the sum written out, the gradient
that masking leaves on prompt positions (none), batched greedy answers against one-by-one
decoding, the batch source inside the trainer, and bad input."""
import pytest
import torch
import torch.nn.functional as F

from mathllm.data import TokenData
from mathllm.lora import fine_tune_trainer
from mathllm.sft import SFTBatches, answer_loss, exact_match, greedy_answers, sft_row, sft_rows
from mathllm.train import TrainConfig
from mathllm.transformer import GPT, IGNORE_INDEX, GPTConfig

I = IGNORE_INDEX


def tiny_gpt(seed=0, vocab_size=11):
    torch.manual_seed(seed)
    return GPT(GPTConfig.tiny(vocab_size=vocab_size)).double().eval()


PAIRS = [([1, 2, 3], [4, 5]), ([6, 7], [8, 9, 10]), ([3], [2, 1, 0, 5])]


# ---------------------------------------------------------------------------- rows
def test_row_by_hand():
    x, y = sft_row([1, 2, 3], [4, 5])
    # ids 1 2 3 4 5: x drops the last, y drops the first; 1 -> 2 and 2 -> 3 predict the prompt
    assert x.tolist() == [1, 2, 3, 4] and y.tolist() == [I, I, 4, 5]
    x, y = sft_row([1, 2, 3], [4, 5], 7, pad_id=9)
    assert x.tolist() == [1, 2, 3, 4, 9, 9, 9] and y.tolist() == [I, I, 4, 5, I, I, I]
    x, y = sft_row([7], [8])  # a one-token prompt: its only position predicts the answer
    assert x.tolist() == [7] and y.tolist() == [8]


def test_rows_pad_to_the_longest_and_keep_exactly_the_answers():
    x, y = sft_rows(PAIRS)
    assert x.shape == y.shape == (3, 4) and x.dtype == y.dtype == torch.long
    assert y.tolist() == [[I, I, 4, 5], [I, 8, 9, 10], [2, 1, 0, 5]]
    assert x.tolist() == [[1, 2, 3, 4], [6, 7, 8, 9], [3, 2, 1, 0]]
    assert (y != I).sum(1).tolist() == [len(a) for _, a in PAIRS]


# ---------------------------------------------------------------------------- the loss
def test_answer_loss_is_torch_cross_entropy_with_ignore_index():
    model = tiny_gpt()
    x, y = sft_rows(PAIRS)
    logits = model(x)[0]
    reference = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
    # the same sum written out: -log p(answer token | everything before it), over every answer token
    logp = logits.log_softmax(-1)
    terms = [-logp[i, len(p) - 1 + j, a[j]] for i, (p, a) in enumerate(PAIRS) for j in range(len(a))]
    assert len(terms) == 9
    assert answer_loss(model, x, y) == pytest.approx(reference.item(), rel=1e-12)
    assert answer_loss(model, x, y, batch_size=1) == pytest.approx(torch.stack(terms).mean().item(), rel=1e-12)
    # the model's own loss (its forward with targets) agrees too
    assert model(x, y)[1].item() == pytest.approx(reference.item(), rel=1e-12)


def test_an_unmasked_row_gives_another_loss():
    model = tiny_gpt()
    x, y = sft_rows(PAIRS)
    unmasked = torch.where(y == I, torch.roll(x, -1, 1), y)  # the prompt's next tokens as targets
    unmasked[:, -1] = y[:, -1]
    assert abs(model(x, unmasked)[1].item() - answer_loss(model, x, y)) > 1e-6


def test_padding_changes_nothing():
    model = tiny_gpt()
    x, y = sft_row([1, 2, 3], [4, 5])
    xp, yp = sft_row([1, 2, 3], [4, 5], 9, pad_id=10)
    assert answer_loss(model, x[None], y[None]) == pytest.approx(answer_loss(model, xp[None], yp[None]), rel=1e-12)
    torch.testing.assert_close(model(x[None])[0], model(xp[None])[0][:, :4], rtol=1e-12, atol=1e-12)


def test_masked_positions_get_no_gradient():
    model = tiny_gpt()
    x, y = sft_rows(PAIRS)
    logits = model(x)[0].detach().requires_grad_()
    F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100).backward()
    from mathllm.losses import cross_entropy
    logits2 = logits.detach().clone().requires_grad_()
    cross_entropy(logits2, y).backward()
    torch.testing.assert_close(logits2.grad, logits.grad, rtol=1e-12, atol=1e-12)
    assert logits2.grad[y == I].abs().max() == 0 and logits2.grad[y != I].abs().min() > 0


# ---------------------------------------------------------------------------- batches and answers
def test_batches_draw_rows_reproducibly_and_resume():
    x, y = sft_rows(PAIRS)
    a, b = SFTBatches(x, y, 5, seed=3), SFTBatches(x, y, 5, seed=3)
    xa, ya = a.next()
    xb, yb = b.next()
    assert xa.shape == (5, 4) and torch.equal(xa, xb) and torch.equal(ya, yb)
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(r) in rows for r in xa.tolist())
    for r_x, r_y in zip(xa.tolist(), ya.tolist()):  # inputs and targets stay paired
        assert r_y == y[x.tolist().index(r_x)].tolist()
    state = a.state_dict()
    after = a.next()
    a.load_state_dict(state)
    assert torch.equal(a.next()[0], after[0])
    with pytest.raises(ValueError, match="order"):
        a.load_state_dict({"order": "random", "generator": state["generator"]})


def test_greedy_answers_equal_one_at_a_time_and_exact_match():
    model = tiny_gpt()
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8], [9]]
    out = greedy_answers(model, prompts, 4)
    for p, o in zip(prompts, out):
        one = model.generate(torch.tensor([p]), 4, temperature=0.0)[0, len(p):].tolist()
        assert o == one and len(o) == 4
    assert exact_match(out, [o[:2] for o in out]) == 1.0
    assert exact_match([[1, 2, 3], [4, 5, 6]], [[1, 2], [4, 6]]) == 0.5
    with pytest.raises(ValueError):
        exact_match([[1]], [[1], [2]])


def test_the_trainer_trains_on_the_given_batches(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=11))
    data = TokenData.write(tmp_path / "d", list(range(11)) * 20, list(range(11)) * 5, vocab_size=11)
    x, y = sft_rows(PAIRS)
    config = TrainConfig(batch_size=4, max_steps=30, lr=3e-3, warmup_steps=2, eval_interval=0, out_dir="",
                         progress=False, weight_decay=0.0, device="cpu")
    trainer = fine_tune_trainer(model, config, data, batches=SFTBatches(x, y, 4, seed=0))
    before = answer_loss(trainer.model, x, y)
    trainer.train()
    assert answer_loss(trainer.model, x, y) < 0.5 * before
    with pytest.raises(TypeError, match="next"):
        fine_tune_trainer(model, config, data, batches=object())
    with pytest.raises(ValueError, match="resume"):
        fine_tune_trainer(model, TrainConfig(batch_size=4, max_steps=3, warmup_steps=1, out_dir=str(tmp_path / "o"),
                                                      resume=True),
                          data, batches=SFTBatches(x, y, 4))


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("prompt,answer,match", [([], [1], "at least one"), ([1], [], "at least one"),
                                                 ([1, -2], [1], "non-negative"), ([1.5], [1], "non-negative"),
                                                 ("ab", [1], "sequence"), (torch.ones(2), [1], "1-d")])
def test_bad_rows(prompt, answer, match):
    with pytest.raises((ValueError, TypeError), match=match):
        sft_row(prompt, answer)


def test_bad_lengths_and_batches():
    with pytest.raises(ValueError, match="at least"):
        sft_row([1, 2], [3, 4], 2)
    with pytest.raises(TypeError, match="pair"):
        sft_rows([([1], [2], [3])])
    x, y = sft_rows(PAIRS)
    y_none = torch.full_like(y, I)
    with pytest.raises(ValueError, match="answer token"):
        SFTBatches(x, y_none, 2)
    with pytest.raises(ValueError, match="same shape"):
        SFTBatches(x, y[:, :2], 2)
    with pytest.raises(ValueError, match="batch_size"):
        SFTBatches(x, y, 0)
