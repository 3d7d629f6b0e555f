"""Pooling and heads: sizes, masking of padded frames, positional size arguments."""

from __future__ import annotations

import pytest
import torch

from ser.models import AttentiveStatisticsPooling, LinearHead, MeanPooling, MLPHead

POOLINGS = [MeanPooling, AttentiveStatisticsPooling]
HEADS = [LinearHead, MLPHead]


@pytest.mark.parametrize("pooling_cls", POOLINGS)
@pytest.mark.parametrize("head_cls", HEADS)
def test_pooling_then_head_shapes(pooling_cls, head_cls):
    pooling = pooling_cls(24)  # sizes are the first positional args (partial class_path)
    head = head_cls(pooling.output_size, 5)
    hidden = torch.randn(3, 10, 24)
    pooled = pooling(hidden, torch.tensor([10, 4, 1]))
    assert pooled.shape == (3, pooling.output_size)
    assert head(pooled).shape == (3, 5)


@pytest.mark.parametrize("pooling_cls", POOLINGS)
def test_padded_frames_do_not_matter(pooling_cls):
    torch.manual_seed(0)
    pooling = pooling_cls(8).eval()
    hidden = torch.randn(2, 6, 8)
    lengths = torch.tensor([6, 3])
    garbage = hidden.clone()
    garbage[1, 3:] = 1e6  # anything past the length
    expected = pooling(hidden[1:, :3], torch.tensor([3]))
    assert torch.allclose(pooling(garbage, lengths)[1], expected[0], atol=1e-5)
    assert torch.allclose(pooling(hidden, lengths)[1], expected[0], atol=1e-5)


def test_mean_pooling_is_the_mean_of_valid_frames():
    hidden = torch.arange(12.0).reshape(1, 4, 3)
    pooled = MeanPooling(3)(hidden, torch.tensor([2]))
    assert torch.equal(pooled, hidden[0, :2].mean(dim=0, keepdim=True))


def test_attentive_statistics_gives_mean_and_std():
    pooling = AttentiveStatisticsPooling(4, attention_size=8)
    assert pooling.output_size == 8
    torch.nn.init.zeros_(pooling.attention[2].weight)  # equal scores -> plain mean and std
    hidden = torch.randn(1, 5, 4)
    pooled = pooling(hidden, torch.tensor([5]))
    assert torch.allclose(pooled[0, :4], hidden[0].mean(dim=0), atol=1e-5)
    assert torch.allclose(pooled[0, 4:], hidden[0].std(dim=0, unbiased=False), atol=1e-4)


def test_heads_use_dropout_only_in_training():
    head = MLPHead(6, 3, hidden_size=16, dropout=0.5)
    pooled = torch.randn(4, 6)
    head.eval()
    assert torch.equal(head(pooled), head(pooled))
    head.train()
    torch.manual_seed(0)
    assert not torch.equal(head(pooled), head(pooled))
    assert LinearHead(6, 3).linear.out_features == 3
