"""Token backbones (ViT, patch transformer, FT-Transformer): shapes of the token interface, what ``keep`` drops, what
``mask`` hides, that padding cannot leak, intermediates, gradients, clear errors and determinism."""

from __future__ import annotations

import pytest
import torch

from selfsup.backbones import create_backbone, list_backbones
from selfsup.backbones.timeseries import num_patches
from selfsup.backbones.tokens import DropPath, TokenBackbone, Tokens, gather_tokens, make_mask_token, sincos_2d
from selfsup.errors import ConfigError, DataError

SMALL_VIT = {"embed_dim": 32, "depth": 3, "num_heads": 2}
SMALL_PT = {"dim": 16, "depth": 3, "num_heads": 2, "patch_len": 4, "stride": 2, "dropout": 0.0}
SMALL_FT = {"dim": 16, "depth": 3, "num_heads": 2}
CARDINALITIES = (0, 3, 0, 0, 2, 0)  # columns 1 and 4 categorical (3 and 2 categories)
IMAGES = [((1, 28, 28), 4, 49), ((1, 8, 8), 2, 16), ((3, 16, 8), 4, 8)]  # shape, patch size, tokens


def _vit(shape: tuple[int, ...], patch_size: int, **params) -> TokenBackbone:
    torch.manual_seed(0)
    return create_backbone("vit_tiny", shape, **{**SMALL_VIT, "patch_size": patch_size, **params}).eval()


def _pt(C: int, T: int, **params) -> TokenBackbone:
    torch.manual_seed(0)
    return create_backbone("patch_transformer", (C, T), **{**SMALL_PT, **params}).eval()


def _ft(num_columns: int = len(CARDINALITIES), **params) -> TokenBackbone:
    torch.manual_seed(0)
    params = {**SMALL_FT, "cardinalities": CARDINALITIES, **params}
    return create_backbone("ft_transformer", (num_columns,), **params).eval()


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _rows(n: int, seed: int = 0) -> torch.Tensor:
    """Standardised table rows for ``CARDINALITIES``: numeric values, category indices (K = missing)."""
    x = _rand(n, len(CARDINALITIES), seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    for j, k in enumerate(CARDINALITIES):
        if k:
            x[:, j] = torch.randint(0, k + 1, (n,), generator=g).float()
    return x


def _backbones() -> list[tuple[str, TokenBackbone, torch.Tensor]]:
    """One of each kind, with a batch for it: (id, backbone, x)."""
    return [
        ("vit", _vit((1, 8, 8), 2), _rand(3, 1, 8, 8)),
        ("vit_cls", _vit((1, 8, 8), 2, cls_token=True, pool="cls"), _rand(3, 1, 8, 8)),
        ("pt_independent", _pt(2, 20), _rand(3, 2, 20)),
        ("pt_mixed", _pt(2, 20, channel_mode="mixed"), _rand(3, 2, 20)),
        ("ft", _ft(pool="mean"), _rows(3)),
        ("ft_cls", _ft(), _rows(3)),
        ("ft_numeric", _ft(5, cardinalities=(), cls_token=False, pool="mean"), _rand(3, 5)),
    ]


BACKBONE_IDS = [name for name, _, _ in _backbones()]


def _get(name: str) -> tuple[TokenBackbone, torch.Tensor]:
    return next((b, x) for n, b, x in _backbones() if n == name)


def _scrambled(tokens: Tokens, where: torch.Tensor, seed: int = 1) -> Tokens:
    """``tokens`` with wildly different features where ``where [N, L]`` is True."""
    noise = 100 * _rand(*tokens.x.shape, seed=seed)
    x = torch.where(where[..., None], noise, tokens.x)
    return Tokens(x, tokens.positions, tokens.padding, groups=tokens.groups)


def test_registered_as_token_backbones() -> None:
    assert {"vit_tiny", "vit_small", "patch_transformer", "ft_transformer"} <= set(list_backbones())
    for name, shape in [("vit_tiny", (1, 8, 8)), ("vit_small", (1, 8, 8)), ("patch_transformer", (1, 8)),
                        ("ft_transformer", (5,))]:
        backbone = create_backbone(name, shape)
        assert isinstance(backbone, TokenBackbone) and "tokens" in backbone.provides
    tiny = create_backbone("vit_tiny", (1, 28, 28))
    assert (tiny.embed_dim, len(tiny.blocks), tiny.sequence_length) == (128, 4, 49)
    assert create_backbone("vit_small", (3, 32, 32)).embed_dim == 192


@pytest.mark.parametrize("shape,patch_size,L", IMAGES)
def test_vit_shapes(shape: tuple[int, int, int], patch_size: int, L: int) -> None:
    vit = _vit(shape, patch_size)
    x = _rand(2, *shape)
    D = vit.embed_dim
    tokens = vit.tokenize(x)
    assert vit.sequence_length == L and tokens.x.shape == (2, L, D) and tokens.padding is None
    assert torch.equal(tokens.positions, torch.arange(L).expand(2, L))
    encoded = vit.encode(tokens)
    assert encoded.x.shape == (2, L, D) and encoded.cls is None
    assert vit(x).shape == (2, D)
    inter = vit.forward_intermediates(x, layers=[0, 2])
    assert len(inter) == 2 and all(h.shape == (2, L, D) for h in inter)
    keep = torch.stack([torch.randperm(L)[: L // 4] for _ in range(2)])
    assert vit.encode(tokens, keep=keep).x.shape == (2, L // 4, D)
    assert vit.forward_intermediates(x, [1], keep=keep)[0].shape == (2, L // 4, D)


def test_vit_patchify_follows_the_token_order() -> None:
    vit = _vit((3, 16, 8), 4)
    x = _rand(2, 3, 16, 8)
    patches = vit.patchify(x)
    assert patches.shape == (2, 8, 4 * 4 * 3)
    token = 5  # grid 4 x 2: row 2, column 1
    want = x[:, :, 8:12, 4:8].permute(0, 2, 3, 1).reshape(2, -1)  # rows, columns, channels last
    torch.testing.assert_close(patches[:, token], want)


def test_vit_cls_token() -> None:
    vit = _vit((1, 8, 8), 2, cls_token=True, pool="cls")
    x = _rand(3, 1, 8, 8)
    encoded = vit.encode(vit.tokenize(x))
    assert encoded.x.shape == (3, 16, 32) and encoded.cls.shape == (3, 32)
    torch.testing.assert_close(vit(x), encoded.cls)
    assert vit.forward_intermediates(x, [-1])[0].shape == (3, 16, 32)  # CLS not among the patch tokens
    mean_pooled = _vit((1, 8, 8), 2, cls_token=True)
    torch.testing.assert_close(mean_pooled(x), mean_pooled.encode(mean_pooled.tokenize(x)).x.mean(dim=1))


@pytest.mark.parametrize("mode", ["independent", "mixed"])
@pytest.mark.parametrize("C,T", [(1, 2), (3, 20), (2, 37)])
def test_patch_transformer_shapes(mode: str, C: int, T: int) -> None:
    model = _pt(C, T, channel_mode=mode)
    x = _rand(4, C, T)
    L, D = num_patches(T, 4, 2), model.embed_dim
    rows = 4 * C if mode == "independent" else 4
    assert model.sequence_length == L
    tokens = model.tokenize(x)
    assert tokens.x.shape == (rows, L, D) and tokens.padding.shape == (rows, L)
    assert tokens.groups == (C if mode == "independent" else 1)
    assert torch.equal(tokens.positions, torch.arange(L).expand(rows, L))
    encoded = model.encode(tokens)
    assert encoded.x.shape == (rows, L, D)
    torch.testing.assert_close(model(x), model.pool(encoded))
    assert model(x).shape == (4, D) and model.forward_tokens(x).shape == (4, L, D)
    inter = model.forward_intermediates(x, [0, 1, 2])
    assert len(inter) == 3 and all(h.shape == (rows, L, D) for h in inter)
    assert model.patchify(x).shape == (rows, L, 4 if mode == "independent" else 4 * C)


def test_patch_transformer_patchify_marks_missing_steps() -> None:
    model = _pt(2, 12, channel_mode="mixed")
    x = _rand(1, 2, 12)
    x[0, 1, 3] = float("nan")
    patches = model.patchify(x)  # patch i covers steps 2i .. 2i+3, channel-major
    torch.testing.assert_close(patches[0, 1, :4], x[0, 0, 2:6])
    assert torch.isnan(patches[0, 0, 4 + 3]) and torch.isnan(patches[0, 1, 4 + 1])
    torch.testing.assert_close(patches[0, -1, :4], x[0, 0, [10, 11, 11, 11]])  # end padding repeats the last step


def test_vit_keep_drops_the_other_patches() -> None:
    """Kept tokens' outputs depend only on the kept patches' pixels."""
    vit = _vit((1, 28, 28), 4)
    x = _rand(2, 1, 28, 28)
    keep = torch.tensor([[0, 8, 30, 48], [47, 3, 12, 20]])  # any order; the output follows it
    other = x.clone()
    for n in range(2):  # new pixels in every patch not kept
        for t in set(range(49)) - set(keep[n].tolist()):
            r, c = divmod(t, 7)
            other[n, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = _rand(1, 4, 4, seed=t)
    a = vit.encode(vit.tokenize(x), keep=keep)
    b = vit.encode(vit.tokenize(other), keep=keep)
    assert torch.equal(a.positions, keep)
    torch.testing.assert_close(a.x, b.x)
    full_a, full_b = vit.encode(vit.tokenize(x)), vit.encode(vit.tokenize(other))
    assert not torch.allclose(gather_tokens(full_a.x, keep), gather_tokens(full_b.x, keep), atol=1e-3)
    # Keeping = running the transformer on only those tokens.
    tokens = vit.tokenize(x)
    only = Tokens(gather_tokens(tokens.x, keep), keep)
    torch.testing.assert_close(vit.encode(only).x, a.x)


def test_ft_transformer_shapes_and_tokenizer() -> None:
    ft = _ft()
    x = _rows(4)
    F, D = len(CARDINALITIES), 16
    assert "tokens" in ft.provides and ft.sequence_length == F and ft.embed_dim == D
    tokens = ft.tokenize(x)
    assert tokens.x.shape == (4, F, D) and tokens.padding is None
    assert torch.equal(tokens.positions, torch.arange(F).expand(4, F))
    encoded = ft.encode(tokens)
    assert encoded.x.shape == (4, F, D) and encoded.cls.shape == (4, D)
    torch.testing.assert_close(ft(x), encoded.cls)  # pool="cls" by default, as the paper
    assert ft.forward_intermediates(x, [0, 2])[1].shape == (4, F, D)  # no CLS among the column tokens
    # The feature tokenizer: numeric column j -> x_j * W_j + b_j; categorical -> E_j[x_j] + b_j.
    torch.testing.assert_close(tokens.x[:, 2], x[:, 2:3] * ft.numeric_weight[1] + ft.pos_embed[2])  # 2nd numeric
    table = ft.columns.embedding.weight[ft.columns.offsets[1] : ft.columns.offsets[1] + 3]  # column 4: K + 1 = 3 rows
    torch.testing.assert_close(tokens.x[:, 4], table[x[:, 4].long()] + ft.pos_embed[4])
    # Index K ("missing") and anything beyond it share the missing row; the categories differ.
    rows = _rows(3)
    rows[:, 4] = torch.tensor([2.0, 9.0, 0.0])
    out = ft.tokenize(rows).x[:, 4]
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[0], out[2])
    # MAE's target: a numeric column's value, NaN for a categorical one (not a value to regress).
    patches = ft.patchify(x)
    assert patches.shape == (4, F, 1)
    assert torch.isnan(patches[:, [1, 4], 0]).all()
    torch.testing.assert_close(patches[:, [0, 2, 3, 5], 0], x[:, [0, 2, 3, 5]])
    mean_pooled = _ft(pool="mean")
    torch.testing.assert_close(mean_pooled(x), mean_pooled.encode(mean_pooled.tokenize(x)).x.mean(dim=1))


def test_ft_transformer_keep_drops_the_other_columns() -> None:
    """Kept columns' outputs depend only on the kept columns' values (numeric and categorical)."""
    ft = _ft()
    x = _rows(2)
    keep = torch.tensor([[0, 4, 2], [5, 1, 3]])  # any order; the output follows it
    other = _rows(2, seed=7)  # new values everywhere ...
    other.scatter_(1, keep, x.gather(1, keep))  # ... except in the kept columns
    a, b = ft.encode(ft.tokenize(x), keep=keep), ft.encode(ft.tokenize(other), keep=keep)
    assert torch.equal(a.positions, keep)
    torch.testing.assert_close(a.x, b.x)
    torch.testing.assert_close(a.cls, b.cls)
    full_a, full_b = ft.encode(ft.tokenize(x)), ft.encode(ft.tokenize(other))
    assert not torch.allclose(gather_tokens(full_a.x, keep), gather_tokens(full_b.x, keep), atol=1e-3)


def test_ft_transformer_masked_columns_do_not_matter() -> None:
    ft = _ft()
    x = _rows(3)
    mask = torch.zeros(3, len(CARDINALITIES), dtype=torch.bool)
    mask[:, [1, 2]] = True  # a categorical and a numeric column hidden in place
    other = x.clone()
    other[:, 1], other[:, 2] = torch.tensor([0.0, 1.0, 2.0]), 50.0
    token = make_mask_token(16)
    a = ft.encode(ft.tokenize(x), mask=mask, mask_token=token)
    torch.testing.assert_close(ft.encode(ft.tokenize(other), mask=mask, mask_token=token).x, a.x)
    assert a.x.shape == (3, len(CARDINALITIES), 16)
    assert not torch.allclose(ft(other), ft(x), atol=1e-3)


def test_ft_transformer_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="2 cardinalities for 6 columns"):
        create_backbone("ft_transformer", (6,), cardinalities=[0, 2])
    with pytest.raises(ConfigError, match=r"table rows \[F\]"):
        create_backbone("ft_transformer", (3, 16))
    with pytest.raises(ConfigError, match="cls_token"):
        create_backbone("ft_transformer", (4,), cls_token=False)
    with pytest.raises(ConfigError, match="divisible"):
        create_backbone("ft_transformer", (4,), dim=30, num_heads=4)
    with pytest.raises(DataError, match=r"\[N, 6\]"):
        _ft()(_rand(2, 5))


@pytest.mark.parametrize("name", BACKBONE_IDS)
def test_keep_ignores_dropped_tokens(name: str) -> None:
    backbone, x = _get(name)
    tokens = backbone.tokenize(x)
    N, L, D = tokens.x.shape
    keep = torch.stack([torch.randperm(L, generator=torch.Generator().manual_seed(n))[: L // 2] for n in range(N)])
    dropped = torch.ones(N, L, dtype=torch.bool).scatter(1, keep, False)
    changed = _scrambled(tokens, dropped)
    torch.testing.assert_close(backbone.encode(changed, keep=keep).x, backbone.encode(tokens, keep=keep).x)
    assert not torch.allclose(backbone.encode(changed).x, backbone.encode(tokens).x, atol=1e-3)


@pytest.mark.parametrize("name", BACKBONE_IDS)
def test_mask_replaces_tokens_in_place(name: str) -> None:
    backbone, x = _get(name)
    tokens = backbone.tokenize(x)
    N, L, D = tokens.x.shape
    mask_token = make_mask_token(D)
    mask = torch.rand(N, L, generator=torch.Generator().manual_seed(0)) < 0.5
    changed = _scrambled(tokens, mask)
    masked = backbone.encode(tokens, mask=mask, mask_token=mask_token)
    assert masked.x.shape == (N, L, D)
    torch.testing.assert_close(backbone.encode(changed, mask=mask, mask_token=mask_token).x, masked.x)
    assert not torch.allclose(masked.x, backbone.encode(tokens).x, atol=1e-3)
    # Masked tokens differ by position: the mask token gets each position's embedding.
    both = mask[0].nonzero()[:2, 0]
    first_block = backbone.forward_intermediates(x, [0], mask=mask, mask_token=mask_token)[0]
    assert not torch.allclose(first_block[0, both[0]], first_block[0, both[1]])
    with pytest.raises(ValueError, match="mask_token"):
        backbone.encode(tokens, mask=mask)
    keep = torch.arange(L // 2).expand(N, -1)
    assert backbone.encode(tokens, keep=keep, mask=mask, mask_token=mask_token).x.shape == (N, L // 2, D)


def test_vit_masked_pixels_do_not_matter() -> None:
    vit = _vit((1, 8, 8), 2)
    x = _rand(2, 1, 8, 8)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, [0, 5, 6, 15]] = True
    other = x.clone()
    other[:, :, 0:2, 0:2] = 50.0  # token 0
    other[:, :, 2:4, 2:6] = -50.0  # tokens 5 and 6
    token = make_mask_token(32)
    a = vit.encode(vit.tokenize(x), mask=mask, mask_token=token).x
    torch.testing.assert_close(vit.encode(vit.tokenize(other), mask=mask, mask_token=token).x, a)
    assert not torch.allclose(vit(other), vit(x), atol=1e-3)


@pytest.mark.parametrize("name", BACKBONE_IDS)
def test_padding_cannot_leak(name: str) -> None:
    backbone, x = _get(name)
    tokens = backbone.tokenize(x)
    N, L, D = tokens.x.shape
    padding = torch.zeros(N, L, dtype=torch.bool)
    padding[:, L // 2 :] = True
    padding[0] = True  # a row of padding only: finite outputs
    padded = Tokens(tokens.x, tokens.positions, padding, groups=tokens.groups)
    changed = _scrambled(padded, padding)
    a, b = backbone.encode(padded), backbone.encode(changed)
    assert torch.isfinite(a.x).all()
    torch.testing.assert_close(a.x[~padding], b.x[~padding])
    torch.testing.assert_close(backbone.pool(a)[1:], backbone.pool(b)[1:])  # sample 0 holds the padding-only row
    if a.cls is not None:
        torch.testing.assert_close(a.cls[1:], b.cls[1:])


def test_patch_transformer_missing_patches_are_padding() -> None:
    model = _pt(2, 20, channel_mode="mixed")
    x = _rand(2, 2, 20)
    x[0, :, 10:] = float("nan")  # patches 5.. hold no observed step
    tokens = model.tokenize(x)
    assert tokens.padding[0, 5:].all() and not tokens.padding[0, :5].any() and not tokens.padding[1].any()
    torch.testing.assert_close(model(x)[0], model.forward_tokens(x)[0, :5].mean(dim=0))


@pytest.mark.parametrize("name", BACKBONE_IDS)
def test_intermediates_are_the_blocks_before_the_final_norm(name: str) -> None:
    backbone, x = _get(name)
    tokens = backbone.tokenize(x)
    L = tokens.x.shape[1]
    keep = torch.arange(1, L, 2).expand(tokens.x.shape[0], -1)
    for kwargs in [{}, {"keep": keep}]:
        inter = backbone.forward_intermediates(x, layers=[2, 0, -1], **kwargs)
        assert len(inter) == 3
        torch.testing.assert_close(inter[0], inter[2])  # -1 is the last block
        torch.testing.assert_close(backbone.norm(inter[0]), backbone.encode(tokens, **kwargs).x)
        assert not torch.allclose(inter[1], inter[0], atol=1e-3)
    assert backbone.forward_intermediates(x, layers=[]) == []
    with pytest.raises(ValueError, match="out of range"):
        backbone.forward_intermediates(x, layers=[3])


@pytest.mark.parametrize("name", BACKBONE_IDS)
def test_gradients_flow(name: str) -> None:
    backbone, x = _get(name)
    backbone.train()
    tokens = backbone.tokenize(x)
    N, L, D = tokens.x.shape
    mask_token = make_mask_token(D)
    mask = torch.rand(N, L, generator=torch.Generator().manual_seed(0)) < 0.4
    keep = torch.arange(0, L, 2).expand(N, -1)
    loss = backbone(x).pow(2).sum()
    loss = loss + backbone.encode(backbone.tokenize(x), mask=mask, mask_token=mask_token).x.pow(2).mean()
    loss = loss + backbone.encode(backbone.tokenize(x), keep=keep).x.mean()
    loss = loss + sum(h.mean() for h in backbone.forward_intermediates(x, [0, 1]))
    loss.backward()
    for pname, p in [*backbone.named_parameters(), ("mask_token", mask_token)]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


def test_bad_shapes_and_settings_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"\(1, 28, 28\).*5x5.*2, 4, 7, 14.*patch_size=4"):
        create_backbone("vit_tiny", (1, 28, 28), patch_size=5)
    with pytest.raises(ConfigError, match=r"\(3, 12, 8\).*3x3.*2, 4"):
        create_backbone("vit_tiny", (3, 12, 8), patch_size=3)
    with pytest.raises(ConfigError, match=r"images \[C, H, W\].*patch_transformer"):
        create_backbone("vit_tiny", (3, 16))
    with pytest.raises(ConfigError, match="cls_token"):
        create_backbone("vit_tiny", (1, 8, 8), pool="cls")
    with pytest.raises(ConfigError, match="divisible"):
        create_backbone("vit_tiny", (1, 8, 8), embed_dim=30, num_heads=3)
    vit = _vit((1, 8, 8), 2)
    with pytest.raises(DataError, match=r"\[N, 1, 8, 8\]"):
        vit(_rand(2, 1, 8, 12))
    tokens = vit.tokenize(_rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="keep must be long"):
        vit.encode(tokens, keep=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask must be bool"):
        vit.encode(tokens, mask=torch.zeros(2, 15, dtype=torch.bool), mask_token=make_mask_token(32))


def test_deterministic_given_the_seed() -> None:
    x = _rand(2, 1, 8, 8)
    a, b = _vit((1, 8, 8), 2, drop_path=0.2), _vit((1, 8, 8), 2, drop_path=0.2)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    a.train(), b.train()
    torch.manual_seed(3)
    out_a = a(x)
    torch.manual_seed(3)
    torch.testing.assert_close(b(x), out_a, rtol=0, atol=0)
    a.eval()
    torch.testing.assert_close(a(x), a(x), rtol=0, atol=0)


def test_drop_path_drops_whole_samples_in_training_only() -> None:
    drop = DropPath(0.5)
    x = torch.ones(200, 3, 4)
    assert torch.equal(drop.eval()(x), x)
    out = drop.train()(x)
    per_sample = out.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert 50 < (per_sample == 0).all(1).sum() < 150


def test_sincos_2d_encodes_row_and_column() -> None:
    emb = sincos_2d(3, 4, 16)
    assert emb.shape == (12, 16)
    rows, cols = emb[:, :8], emb[:, 8:]
    torch.testing.assert_close(rows[4], rows[7])  # tokens 4 and 7 share row 1
    torch.testing.assert_close(cols[1], cols[9])  # tokens 1 and 9 share column 1
    assert not torch.allclose(rows[0], rows[4]) and not torch.allclose(cols[0], cols[1])
    assert torch.equal(emb[0], torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1] * 2))  # sin 0, cos 0
