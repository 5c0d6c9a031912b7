"""Time-series backbones: the registry contract, shapes for any C and T, gradients, missing values and
timestamp masks (masked timestamps must not leak into the output), the papers' architectures, and a
few training steps of joint-embedding methods on series."""

from __future__ import annotations

import pytest
import torch

from selfsup.methods.base import StepContext

from selfsup.backbones import BACKBONES, create_backbone, list_backbones
from selfsup.backbones.timeseries import PatchTransformer, ResNet1d, TS2VecEncoder, num_patches
from selfsup.errors import ConfigError, DataError
from selfsup.methods import Encoder, create_method
from selfsup.views import create_views

NAMES = ("ts2vec_encoder", "resnet1d", "patch_transformer")
SMALL = {  # small widths keep the tests fast; the defaults are tested for their architecture below
    "ts2vec_encoder": {"hidden_dim": 16, "output_dim": 24, "depth": 4},
    "resnet1d": {"widths": [8, 16, 16]},
    "patch_transformer": {"dim": 16, "depth": 2, "num_heads": 2, "patch_len": 4, "stride": 2},
}
NAN = float("nan")


def _build(name: str, C: int, T: int, small: bool = True, **params) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone(name, (C, T), **{**(SMALL[name] if small else {}), **params})


def _x(N: int, C: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(N, C, T, generator=torch.Generator().manual_seed(seed))


def test_registered_and_marked_as_series_backbones() -> None:
    assert set(NAMES) <= set(list_backbones())
    assert all(getattr(BACKBONES.get(name), "modality", None) == "timeseries" for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_registry_contract_with_default_config(name: str) -> None:
    """What tests/test_methods.py::test_backbone_contract checks, with series samples (3, 16)."""
    backbone = create_backbone(name, (3, 16))
    out = backbone(torch.rand(4, 3, 16))
    assert out.shape == (4, backbone.embed_dim) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("C,T", [(1, 2), (1, 37), (3, 16), (5, 9)])
def test_shapes_for_any_channels_and_length(name: str, C: int, T: int) -> None:
    backbone = _build(name, C, T)
    x = _x(3, C, T)
    out = backbone(x)
    tokens = backbone.forward_tokens(x)
    assert out.shape == (3, backbone.embed_dim)
    expected = T if name != "patch_transformer" else num_patches(T, 4, 2)
    assert tokens.shape == (3, expected, backbone.embed_dim)
    shorter = backbone(x[..., : max(2, T // 2)])  # crops shorter than the build length work too
    assert shorter.shape == (3, backbone.embed_dim)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    backbone = _build(name, 2, 24).train()
    x = _x(4, 2, 24)
    x[0, :, 18:] = NAN
    (backbone(x).pow(2).sum() + backbone.forward_tokens(x).mean()).backward()
    for pname, p in backbone.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_missing_values_give_finite_outputs(name: str) -> None:
    backbone = _build(name, 2, 20).eval()
    x = _x(4, 2, 20)
    x[0, :, 12:] = NAN  # padded shorter series
    x[1, 1, 5] = NAN  # one missing value
    x[2] = NAN  # nothing observed
    out, tokens = backbone(x), backbone.forward_tokens(x)
    assert torch.isfinite(out).all() and torch.isfinite(tokens).all()
    assert torch.equal(out[2], torch.zeros_like(out[2]))  # nothing observed: nothing to pool


@pytest.mark.parametrize("name", NAMES)
def test_masked_and_missing_timestamps_do_not_leak(name: str) -> None:
    """A masked timestamp's values cannot change any output, and masking equals marking it missing."""
    backbone = _build(name, 2, 24).eval()
    x = _x(3, 2, 24)
    mask = torch.ones(3, 24, dtype=torch.bool)
    mask[:, 7:11] = False
    other = x.clone()
    other[:, :, 7:11] = 1e3 * _x(3, 2, 4, seed=1)  # wildly different values where masked
    missing = x.clone()
    missing[:, 0, 7:11] = NAN  # missing in one channel = the whole timestamp is missing
    a = backbone.forward_tokens(x, mask)
    torch.testing.assert_close(backbone.forward_tokens(other, mask), a, rtol=0, atol=1e-5)
    torch.testing.assert_close(backbone.forward_tokens(missing), a, rtol=0, atol=1e-5)
    assert not torch.allclose(backbone.forward_tokens(x), a, atol=1e-3)  # the mask does something


def test_ts2vec_encoder_architecture_matches_the_paper() -> None:
    encoder = _build("ts2vec_encoder", 3, 50, small=False)
    assert isinstance(encoder, TS2VecEncoder) and encoder.embed_dim == 320
    assert (encoder.input_fc.in_features, encoder.input_fc.out_features) == (3, 64)
    assert len(encoder.blocks) == 11  # 10 hidden blocks + the output block
    for i, block in enumerate(encoder.blocks):
        assert block.conv1.conv.dilation == (2**i,) and block.conv1.conv.kernel_size == (3,)
        assert block.conv2.conv.out_channels == (64 if i < 10 else 320)
    assert isinstance(encoder.blocks[-1].projector, torch.nn.Conv1d)  # the final block projects its residual
    assert isinstance(encoder.blocks[0].projector, torch.nn.Identity)
    assert encoder.repr_dropout.p == 0.1


def test_ts2vec_mask_zeroes_features_after_the_input_projection() -> None:
    """All timestamps masked = all-zero features entering the convolutions (not zero inputs, which the
    projection's bias would turn into non-zero features)."""
    encoder = _build("ts2vec_encoder", 2, 16).eval()
    x = _x(2, 2, 16)
    all_masked = encoder.forward_tokens(x, torch.zeros(2, 16, dtype=torch.bool))
    from_zero_features = encoder.blocks(torch.zeros(2, 16, 16)).transpose(1, 2)
    torch.testing.assert_close(all_masked, from_zero_features)
    zero_inputs = encoder.blocks(encoder.input_fc(torch.zeros(2, 16, 2)).transpose(1, 2)).transpose(1, 2)
    assert not torch.allclose(all_masked, zero_inputs, atol=1e-4)


def test_ts2vec_instance_representation_is_the_max_over_observed_timestamps() -> None:
    encoder = _build("ts2vec_encoder", 1, 30).eval()
    x = _x(3, 1, 30)
    x[0, :, 20:] = NAN
    x[1, :, 3] = NAN
    tokens = encoder.forward_tokens(x)
    pooled = encoder(x)
    for i in range(3):  # naive reference: loop over the observed timestamps
        observed = [t for t in range(30) if not torch.isnan(x[i, :, t]).any()]
        want = torch.stack([tokens[i, t] for t in observed]).max(dim=0).values
        torch.testing.assert_close(pooled[i], want)
    # The excluded timestamps would have changed the result: the test above can fail.
    assert not torch.allclose(pooled[0], tokens[0].max(dim=0).values)


def test_ts2vec_dropout_only_in_training() -> None:
    encoder = _build("ts2vec_encoder", 1, 12)
    x = _x(2, 1, 12)
    encoder.train()
    assert not torch.equal(encoder(x), encoder(x))
    encoder.eval()
    assert torch.equal(encoder(x), encoder(x))


def test_resnet1d_architecture_and_average_pooling() -> None:
    net = _build("resnet1d", 2, 40, small=False)
    assert isinstance(net, ResNet1d) and net.embed_dim == 128
    convs = [m for m in net.blocks.modules() if isinstance(m, torch.nn.Conv1d)]
    body = [c for c in convs if c.kernel_size != (1,)]
    assert [c.kernel_size[0] for c in body] == [8, 5, 3] * 3
    assert [c.out_channels for c in body[::3]] == [64, 128, 128]
    net.eval()
    x = _x(2, 2, 40)
    x[1, :, 25:] = NAN
    tokens, pooled = net.forward_tokens(x), net(x)
    torch.testing.assert_close(pooled[0], tokens[0].mean(dim=0))
    torch.testing.assert_close(pooled[1], tokens[1, :25].mean(dim=0))


def test_patch_transformer_patches_modes_and_length_limit() -> None:
    assert num_patches(96, 16, 8) == 12 and num_patches(3, 16, 8) == 1  # PatchTST's (T - P) / S + 2
    model = _build("patch_transformer", 3, 20)
    assert isinstance(model, PatchTransformer) and model.max_patches == num_patches(20, 4, 2)
    with pytest.raises(DataError, match="at most 20 steps"):
        model(_x(2, 3, 21))
    mixed = _build("patch_transformer", 3, 20, channel_mode="mixed")
    assert mixed.patch_embed.in_features == 12 and mixed(_x(2, 3, 20)).shape == (2, 16)
    model.eval()
    x = _x(2, 3, 20)
    x[0, :, 10:] = NAN  # patches 5.. hold no observed step (patch i covers steps 2i, 2i+1, 2i+2, 2i+3)
    tokens = model.forward_tokens(x)
    torch.testing.assert_close(model(x)[0], tokens[0, :5].mean(dim=0))


def test_bad_shapes_are_clear_errors() -> None:
    for name in NAMES:
        with pytest.raises(ConfigError, match=r"series \[C, T\].*resnet_tiny"):
            create_backbone(name, (3, 16, 16))
        with pytest.raises(ConfigError, match="at least 1 channel and 2 timestamps"):
            create_backbone(name, (1, 1))
        backbone = _build(name, 2, 10)
        with pytest.raises(DataError, match=r"\[N, 2, T >= 2\]"):
            backbone(_x(2, 3, 10))
        with pytest.raises(DataError, match="mask must be bool"):
            backbone.forward_tokens(_x(2, 2, 10), torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ConfigError, match="pool"):
        create_backbone("resnet1d", (1, 10), pool="median")


@pytest.mark.parametrize(
    "method,backbone,views",
    [
        ("simclr", "ts2vec_encoder", "timeseries"),
        ("simclr", "resnet1d", "timeseries"),
        ("simclr", "patch_transformer", "timeseries"),
        ("byol", "ts2vec_encoder", "timeseries"),
        ("vicreg", "resnet1d", "timeseries"),
        ("barlow_twins", "ts2vec_encoder", "frame_projections"),
    ],
)
def test_joint_embedding_methods_train_on_series(method: str, backbone: str, views: str) -> None:
    """Views and backbones fit the method contract: finite loss, the backbone learns."""
    torch.manual_seed(0)
    C, T = 2, 24
    net = _build(backbone, C, T)
    encoder = Encoder(net, torch.zeros(C, 1), torch.ones(C, 1), (C, T))
    model = create_method(method, encoder)
    params = {"num_scales": 2, "scales": [2.0, 8.0]} if views == "frame_projections" else {}
    make_views = create_views(views, "timeseries", params)
    g = torch.Generator().manual_seed(0)
    x = _x(16, C, T)
    x[:3, :, 18:] = NAN
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = torch.cat([p.detach().flatten() for p in net.parameters()]).clone()
    for step in range(2):
        out = model.training_step(make_views(x, g, model.num_global_views, model.num_local_views), StepContext(0, 1))
        assert torch.isfinite(out.loss)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        model.on_step_end(StepContext(step, 2))
    assert not torch.equal(before, torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.isfinite(model.embed(x)).all()
