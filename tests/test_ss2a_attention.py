"""Efficient attention (Shen et al. 2021) against its definition, written out per batch item and head."""

import torch

from foleykit.modules.efficient_attention import EfficientSelfAttention, efficient_attention


def _definition(q, k, v, heads, pad=None, key_softmax="tokens"):
    """E = ρq(Q) (ρk(K)ᵀ V) per item and head; padded keys are dropped before ρk and the sum."""
    b, lq, d = q.shape
    dv = v.shape[-1]
    dk, dh = d // heads, dv // heads
    out = torch.zeros(b, lq, dv, dtype=torch.float64)
    for i in range(b):
        keep = torch.ones(k.shape[1], dtype=torch.bool) if pad is None else ~pad[i]
        for h in range(heads):
            qh = q[i, :, h * dk : (h + 1) * dk].double()
            kh = k[i, keep, h * dk : (h + 1) * dk].double()
            vh = v[i, keep, h * dh : (h + 1) * dh].double()
            rho_q = torch.exp(qh) / torch.exp(qh).sum(dim=1, keepdim=True)  # over each query's features
            if key_softmax == "tokens":
                rho_k = torch.exp(kh) / torch.exp(kh).sum(dim=0, keepdim=True)  # over tokens, per feature
            else:
                rho_k = torch.exp(kh) / torch.exp(kh).sum(dim=1, keepdim=True)
            out[i, :, h * dh : (h + 1) * dh] = rho_q @ (rho_k.T @ vh)
    return out.float()


def test_efficient_attention_equals_its_definition_with_padding():
    g = torch.Generator().manual_seed(0)
    b, lq, lk, d, dv, heads = 3, 5, 7, 8, 12, 2
    q, k, v = (
        torch.randn(b, lq, d, generator=g),
        torch.randn(b, lk, d, generator=g),
        torch.randn(b, lk, dv, generator=g),
    )
    pad = torch.zeros(b, lk, dtype=torch.bool)
    pad[0, 4:] = True
    pad[2, [1, 5]] = True
    for key_softmax in ("tokens", "features"):
        got = efficient_attention(q, k, v, heads, key_padding_mask=pad, key_softmax=key_softmax)
        assert torch.allclose(got, _definition(q, k, v, heads, pad, key_softmax), atol=1e-5), key_softmax
    no_mask = efficient_attention(q, k, v, heads)
    assert torch.allclose(no_mask, _definition(q, k, v, heads), atol=1e-5)
    assert not torch.allclose(no_mask, efficient_attention(q, k, v, heads, key_padding_mask=pad))


def test_padded_keys_cannot_leak_even_when_non_finite():
    g = torch.Generator().manual_seed(1)
    q, k, v = (
        torch.randn(1, 3, 4, generator=g),
        torch.randn(1, 6, 4, generator=g),
        torch.randn(1, 6, 4, generator=g),
    )
    pad = torch.tensor([[False, False, False, True, True, True]])
    k2, v2 = k.clone(), v.clone()
    k2[0, 3:] = 1e30
    v2[0, 3:] = float("inf")
    a = efficient_attention(q, k, v, 2, key_padding_mask=pad)
    b = efficient_attention(q, k2, v2, 2, key_padding_mask=pad)
    assert torch.isfinite(b).all() and torch.allclose(a, b)
    assert torch.allclose(
        a, efficient_attention(q, k[:, :3], v[:, :3], 2)
    )  # = attention without those tokens


def test_all_padded_gives_zero_context_not_nan():
    q, k, v = torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    out = efficient_attention(q, k, v, 2, key_padding_mask=torch.ones(1, 3, dtype=torch.bool))
    assert torch.equal(out, torch.zeros_like(out))


def test_self_attention_layer_is_highway_plus_attention():
    torch.manual_seed(0)
    layer = EfficientSelfAttention(8, 2).eval()
    x = torch.randn(2, 4, 8)
    h = layer.norm(x)
    expected = layer.highway(x) + _definition(layer.query(h), layer.key(h), layer.value(h), 2)
    assert torch.allclose(layer(x), expected, atol=1e-5)
