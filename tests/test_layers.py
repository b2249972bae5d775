"""llmrec.layers: the cheaper dropout keeps nn.Dropout's distribution, and attention is sdpa's."""

import pytest
import torch
import torch.nn.functional as F

from llmrec.layers import Dropout, attention, dropout


def test_dropout_keeps_the_distribution_and_scales():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    for p in (0.1, 0.5, 0.9):
        y = dropout(x, p)
        kept = y != 0
        assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # ~ 5 standard errors at n = 200,000
        assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert torch.equal(dropout(x, 0.5, training=False), x) and torch.equal(dropout(x, 0.0), x)
    assert not dropout(x, 1.0).any()


def test_dropout_gradient_is_the_mask_and_seeded():
    x = torch.randn(64, 32, requires_grad=True)
    torch.manual_seed(1)
    y = dropout(x, 0.3)
    y.sum().backward()
    assert torch.allclose(x.grad, (y != 0).float() / 0.7)
    torch.manual_seed(1)
    assert torch.equal(dropout(x, 0.3), y)
    m = Dropout(0.3)
    assert torch.equal(m.eval()(x), x) and "p=0.3" in repr(m)
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_attention_matches_sdpa():
    torch.manual_seed(2)
    q, k, v = (torch.randn(3, 2, 7, 8) for _ in range(3))
    mask = torch.ones(7, 7, dtype=torch.bool).tril() & (torch.rand(3, 1, 1, 7) > 0.3) | torch.eye(7, dtype=torch.bool)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(attention(q, k, v, mask, 0.5, training=False), ref, atol=1e-6)
    # with dropout: the written-out path, at p -> 0 it is the same computation
    assert torch.allclose(attention(q, k, v, mask, 1e-12, training=True), ref, atol=1e-5)
    out = attention(q, k, v, mask, 0.5, training=True)
    assert out.shape == ref.shape and torch.isfinite(out).all() and not torch.allclose(out, ref)
