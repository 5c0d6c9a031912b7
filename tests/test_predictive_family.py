"""I-JEPA and data2vec 2.0: losses against slow references, masks, teachers, multi-mask, series,
reproducibility, bad knobs, and learning on digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from selfsup.backbones import create_backbone
from selfsup.config import RunConfig, load_yaml
from selfsup.errors import ConfigError
from selfsup.losses.predictive import data2vec_loss, data2vec_targets, ijepa_loss, instance_norm_tokens
from selfsup.methods import Encoder, StepContext, create_method
from selfsup.methods.data2vec2 import inverse_block_mask
from selfsup.methods.ijepa import multi_span_mask
from selfsup.views import Views

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
VIT = {"patch_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 4}
SERIES = {"patch_len": 4, "stride": 4, "dim": 32, "depth": 2, "num_heads": 4}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(name: str, modality: str = "image", backbone_params: dict | None = None, **params):
    torch.manual_seed(0)
    if modality == "image":
        shape, backbone, stats = (1, 8, 8), "vit_tiny", (1, 1, 1)
    else:
        shape, backbone, stats = (2, 16), "patch_transformer", (2, 1)
    net = create_backbone(backbone, shape, **{**(VIT if modality == "image" else SERIES), **(backbone_params or {})})
    return create_method(name, Encoder(net, torch.zeros(stats), torch.ones(stats), shape), **params)


def step(method, x: torch.Tensor, seed: int = 0):
    return method.training_step(Views([x]), StepContext(0, 10, generator=gen(seed)))


# ----------------------------------------------------------------------------- losses vs references


def ijepa_reference(predictions, targets, regression, valid=None):
    """Eq. (1) of Assran et al. 2023 with explicit loops: per block, the mean over its counted
    tokens of the per-token error (mean over features); then the mean over blocks."""
    per_block = []
    for b, (p, t) in enumerate(zip(predictions, targets)):
        total, count = 0.0, 0
        for n in range(p.shape[0]):
            for j in range(p.shape[1]):
                if valid is not None and not valid[b][n, j]:
                    continue
                err = 0.0
                for d in range(p.shape[2]):
                    diff = float(p[n, j, d] - t[n, j, d])
                    err += diff**2 if regression == "mse" else (0.5 * diff**2 if abs(diff) < 1 else abs(diff) - 0.5)
                total += err / p.shape[2]
                count += 1
        per_block.append(total / max(count, 1))
    return sum(per_block) / len(per_block)


@pytest.mark.parametrize("regression", ["mse", "smooth_l1"])
@pytest.mark.parametrize(("n", "t", "d", "blocks"), [(2, 3, 4, 1), (3, 5, 2, 4)])
def test_ijepa_loss_matches_the_reference(regression: str, n: int, t: int, d: int, blocks: int) -> None:
    g = gen(1)
    predictions = [2 * torch.randn(n, t, d, generator=g) for _ in range(blocks)]
    targets = [torch.randn(n, t, d, generator=g) for _ in range(blocks)]
    valid = [torch.rand(n, t, generator=g) > 0.3 for _ in range(blocks)]
    for v in valid:
        v[0, 0] = True
    reference = ijepa_reference(predictions, targets, regression)
    assert ijepa_loss(predictions, targets, regression).item() == pytest.approx(reference, rel=1e-5)
    assert ijepa_loss(predictions, targets, regression, valid).item() == pytest.approx(
        ijepa_reference(predictions, targets, regression, valid), rel=1e-5
    )


def test_ijepa_loss_closed_forms() -> None:
    z = torch.randn(4, 6, 8, generator=gen())
    assert ijepa_loss([z, z], [z, z]).item() == 0.0
    assert ijepa_loss([z + 0.5], [z], "mse").item() == pytest.approx(0.25)
    assert ijepa_loss([z + 0.5], [z], "smooth_l1").item() == pytest.approx(0.5 * 0.25)  # quadratic below beta = 1
    assert ijepa_loss([z + 3.0], [z], "smooth_l1").item() == pytest.approx(2.5)  # |d| - 0.5 above
    # Blocks are averaged with equal weight, whatever their sizes.
    assert ijepa_loss([z + 1.0, z[:, :2] + 3.0], [z, z[:, :2]], "mse").item() == pytest.approx((1 + 9) / 2)


def data2vec_reference(layers, padding=None, eps=1e-5):
    """Instance norm per sample and feature over the (non-padding) tokens, the mean over layers,
    then layer norm per token over the features; explicit loops."""
    N, L, D = layers[0].shape
    out = torch.zeros(N, L, D)
    for n in range(N):
        tokens = [j for j in range(L) if padding is None or not padding[n, j]]
        for layer in layers:
            for d in range(D):
                values = [float(layer[n, j, d]) for j in tokens]
                mean = sum(values) / len(values)
                var = sum((v - mean) ** 2 for v in values) / len(values)
                for j in range(L):
                    out[n, j, d] += (float(layer[n, j, d]) - mean) / (var + eps) ** 0.5 / len(layers)
        for j in range(L):
            row = [float(v) for v in out[n, j]]
            mean = sum(row) / D
            var = sum((v - mean) ** 2 for v in row) / D
            out[n, j] = torch.tensor([(v - mean) / (var + eps) ** 0.5 for v in row])
    return out


@pytest.mark.parametrize(("n", "length", "d", "k"), [(2, 5, 4, 1), (3, 4, 6, 3)])
@pytest.mark.parametrize("padded", [False, True])
def test_data2vec_targets_match_the_reference(n: int, length: int, d: int, k: int, padded: bool) -> None:
    g = gen(2)
    layers = [3 * torch.randn(n, length, d, generator=g) + 1 for _ in range(k)]
    padding = None
    if padded:
        padding = torch.zeros(n, length, dtype=torch.bool)
        padding[0, -2:] = True
    expected = data2vec_reference(layers, padding)
    torch.testing.assert_close(data2vec_targets(layers, padding), expected, rtol=1e-4, atol=1e-4)


def test_data2vec_targets_closed_forms() -> None:
    g = gen(3)
    x = torch.randn(2, 7, 5, generator=g)
    # Instance norm removes each feature's per-sample offset and positive scale.
    scale, shift = torch.rand(2, 1, 5, generator=g) + 0.5, torch.randn(2, 1, 5, generator=g)
    torch.testing.assert_close(instance_norm_tokens(x * scale + shift), instance_norm_tokens(x), rtol=1e-4, atol=1e-4)
    normed = instance_norm_tokens(x)
    torch.testing.assert_close(normed.mean(dim=1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    # Averaging a block with itself changes nothing; every target token has mean 0, variance 1.
    y = data2vec_targets([x, x])
    torch.testing.assert_close(y, data2vec_targets([x]))
    torch.testing.assert_close(y.mean(dim=-1), torch.zeros(2, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=-1, unbiased=False), torch.ones(2, 7), atol=1e-3, rtol=0)
    assert not data2vec_targets([x.requires_grad_()]).requires_grad


@pytest.mark.parametrize(("n", "length", "d"), [(2, 4, 3), (3, 6, 5)])
def test_data2vec_loss_matches_the_reference(n: int, length: int, d: int) -> None:
    g = gen(4)
    p, t = torch.randn(n, length, d, generator=g), torch.randn(n, length, d, generator=g)
    masked = torch.rand(n, length, generator=g) > 0.5
    masked[0, 0] = True
    cells = [(i, j) for i in range(n) for j in range(length) if masked[i, j]]
    reference = sum(float(((p[i, j] - t[i, j]) ** 2).mean()) for i, j in cells) / len(cells)
    assert data2vec_loss(p, t, masked).item() == pytest.approx(reference, rel=1e-5)
    # Unmasked tokens do not count, whatever they hold; a constant offset c gives c^2.
    assert data2vec_loss(torch.where(masked[..., None], t + 2.0, p), t, masked).item() == pytest.approx(4.0)


# ----------------------------------------------------------------------------- masks


def test_ijepa_masks_keep_targets_out_of_the_context() -> None:
    for modality, length in (("image", 16), ("timeseries", 5)):
        method = make("ijepa", modality)
        masks = method.masks(16, length, gen())
        assert len(masks.targets) == 4
        context = masks.context_mask
        for target in masks.targets:
            assert not context.gather(1, target).any()
            assert ((target >= 0) & (target < length)).all()
        assert masks.context.shape[1] >= 1


def test_multi_span_mask_geometry() -> None:
    masks = multi_span_mask(8, 40, gen(), num_targets=3, target_scale=(0.2, 0.2), context_scale=(0.9, 0.9), min_keep=4)
    assert [t.shape for t in masks.targets] == [(8, 8)] * 3  # int(0.2 * 40) tokens, contiguous
    for target in masks.targets:
        assert (target.diff(dim=1) == 1).all()
        assert not masks.context_mask.gather(1, target).any()
    assert masks.context.shape[1] >= 4 and (masks.context.diff(dim=1) > 0).all()


@pytest.mark.parametrize("grid", [(4, 4), (7, 5), (1, 20)])
def test_inverse_block_mask_keeps_an_exact_count_in_blocks(grid: tuple[int, int]) -> None:
    L = grid[0] * grid[1]
    m = inverse_block_mask(32, grid, 0.6, 2, gen())
    visible = L - round(0.6 * L)
    assert m.keep.shape == (32, visible) and (m.mask.sum(dim=1) == L - visible).all()
    if grid[0] > 1:
        # Visible tokens come in blocks: most have a visible 4-neighbour (random top-ups may not).
        vis = (~m.mask).reshape(32, *grid).float()
        neighbours = F.conv2d(vis[:, None], torch.tensor([[[[0.0, 1, 0], [1, 0, 1], [0, 1, 0]]]]), padding=1)[:, 0]
        assert (neighbours[vis.bool()] > 0).float().mean() > 0.8
    with pytest.raises(ValueError, match="visible"):
        inverse_block_mask(2, grid, 0.99, 2, gen())


# ----------------------------------------------------------------------------- teachers and gradients


def test_ijepa_gradients_reach_context_and_predictor_not_the_target_encoder() -> None:
    method = make("ijepa")
    assert method.encoder is method.teacher.module and method.trained_encoder is method.online
    out = step(method, torch.rand(8, 1, 8, 8))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.predictor.parameters())
    assert all(p.grad is not None for p in method.online.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert out.embeddings.shape == (8, 32) and not out.embeddings.requires_grad
    # The target encoder moves by EMA: teacher <- m * teacher + (1 - m) * online.
    teacher = [p.clone() for p in method.teacher.parameters()]
    with torch.no_grad():
        for p in method.online.parameters():
            p.add_(0.1)
    method.on_step_end(StepContext(4, 10))
    m = 0.996 + (1.0 - 0.996) * 5 / 10
    assert method.momentum == pytest.approx(m)
    for before, after, online in zip(teacher, method.teacher.parameters(), method.online.parameters()):
        torch.testing.assert_close(after, m * before + (1 - m) * online)
    # Weight decay follows the paper's cosine from 0.04 to 0.4.
    assert method.optimizer_schedules(StepContext(0, 10)) == {"weight_decay": pytest.approx(0.04)}
    assert method.optimizer_schedules(StepContext(9, 10)) == {"weight_decay": pytest.approx(0.4)}


def test_ijepa_can_export_the_context_encoder() -> None:
    method = make("ijepa", export_target_encoder=False)
    assert method.encoder is method.online


def test_data2vec2_encodes_m_masked_copies_and_runs_the_teacher_once(monkeypatch) -> None:
    method = make("data2vec2", num_masks=3, mask_ratio=0.5)
    calls = {"encode": [], "teacher": 0}
    encode, intermediates = method.encoder.encode, method.teacher.module.forward_intermediates

    def spy_encode(tokens, keep=None, **kw):
        calls["encode"].append((tokens.x.shape[0], None if keep is None else keep.shape))
        return encode(tokens, keep=keep, **kw)

    def spy_teacher(x, layers, **kw):
        calls["teacher"] += 1
        return intermediates(x, layers, **kw)

    monkeypatch.setattr(method.encoder, "encode", spy_encode)
    monkeypatch.setattr(method.teacher.module, "forward_intermediates", spy_teacher)
    out = step(method, torch.rand(5, 1, 8, 8))
    assert calls == {"encode": [(15, (15, 8))], "teacher": 1}  # 5 samples x 3 masks, 8 of 16 tokens visible
    out.loss.backward()
    assert all(p.grad is not None for p in method.decoder.parameters())
    assert all(p.grad is not None for p in method.encoder.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert out.embeddings.shape == (5, 32) and not out.embeddings.requires_grad


# ----------------------------------------------------------------------------- series, reproducibility, knobs


@pytest.mark.parametrize("name", ["ijepa", "data2vec2"])
@pytest.mark.parametrize("channel_mode", ["independent", "mixed"])
def test_series_path_runs_with_missing_steps(name: str, channel_mode: str) -> None:
    method = make(name, "timeseries", {"channel_mode": channel_mode, "patch_len": 2, "stride": 2})
    x = torch.randn(6, 2, 16, generator=gen())
    x[0, :, -5:] = float("nan")  # the last patches of sample 0 have no observed step
    out = step(method, x)
    assert torch.isfinite(out.loss) and out.embeddings.shape == (6, 32)
    out.loss.backward()
    trained = method.trained_encoder if name == "ijepa" else method.encoder
    assert all(p.grad is not None for p in trained.parameters())


@pytest.mark.parametrize("name", ["ijepa", "data2vec2"])
def test_a_seeded_generator_makes_the_step_reproducible(name: str) -> None:
    x = torch.rand(8, 1, 8, 8, generator=gen(5))
    losses = [step(make(name), x, seed).loss.item() for seed in (0, 0, 1)]
    assert losses[0] == losses[1] and losses[0] != losses[2]


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("ijepa", {"predictor_dim": 30}, "predictor_dim"),
        ("ijepa", {"target_scale": (0.3, 0.2)}, "target_scale"),
        ("ijepa", {"regression": "l3"}, "regression"),
        ("ijepa", {"weight_decay_start": 0.1, "weight_decay_end": None}, "weight_decay"),
        ("data2vec2", {"decoder_kernel": 4}, "decoder_kernel"),
        ("data2vec2", {"mask_ratio": 1.0}, "mask_ratio"),
        ("data2vec2", {"masking": "blocks"}, "masking"),
        ("data2vec2", {"decoder_dim": 100}, "decoder_groups"),
    ],
)
def test_bad_knobs_are_one_line_config_errors(name: str, params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        make(name, **params)
    assert "\n" not in str(error.value)


def test_masks_that_cannot_fit_are_one_line_config_errors() -> None:
    method = make("data2vec2", mask_ratio=0.99)
    with pytest.raises(ConfigError, match="mask_ratio") as error:
        step(method, torch.rand(2, 1, 8, 8))
    assert "\n" not in str(error.value)


# ----------------------------------------------------------------------------- learning on digits


@pytest.fixture(scope="module")
def digits():
    from selfsup.data import load_dataset

    return load_dataset("digits")


def _probe(method, digits) -> float:
    from selfsup.evaluate import linear_probe
    from selfsup.evaluate.embed import embed_in_batches

    def features(x):
        return embed_in_batches(method.encoder, x).numpy()

    return linear_probe(features(digits.train.x), digits.train.y, features(digits.test.x), digits.test.y).accuracy


@pytest.mark.slow
def test_data2vec2_learns_on_digits(digits, tmp_path: Path) -> None:
    """The recipe's settings, cut to 8 epochs of a 2-block ViT: the linear probe of the student
    beats the same ViT at random init (measured: 0.864 -> 0.909)."""
    from selfsup.train.runner import build_method, input_statistics, pretrain

    config = RunConfig.from_dict(load_yaml(RECIPES / "data2vec2-digits.yaml"))
    config.backbone.params = {"patch_size": 2, "embed_dim": 64, "depth": 2, "num_heads": 4}
    config.method.params["num_masks"] = 2
    config.train.epochs, config.train.warmup_epochs = 8, 3
    config.train.progress_bar, config.train.monitor_every_n_epochs = False, 8
    torch.manual_seed(0)
    mean, std = input_statistics(digits.train)
    baseline = _probe(build_method(config, digits.train.sample_shape, mean, std, "image").eval(), digits)
    method = pretrain(config, run_dir=tmp_path / "run", evaluate=False).method.eval()
    accuracy = _probe(method, digits)
    assert accuracy > baseline + 0.01, f"data2vec2: linear probe {accuracy:.3f} not above random init {baseline:.3f}"


@pytest.mark.slow
def test_ijepa_loss_falls_without_collapse_on_digits(digits) -> None:
    """I-JEPA learns slowly at small budgets (on 8x8 digits its probe stayed within 1 point of
    random init after 15 epochs), so this checks the mechanics of learning instead: the loss
    falls, and the target encoder's pooled features keep their spread across samples."""
    method = make("ijepa", backbone_params={"embed_dim": 64})
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.04)
    x = digits.train.x[:512]  # [512, 1, 8, 8] in [0, 1]
    g = gen()

    def spread() -> float:
        with torch.no_grad():
            return method.encoder(x).std(dim=0).mean().item()

    start, losses = spread(), []
    for i in range(60):
        batch = x[torch.randint(0, len(x), (128,), generator=g)]
        out = method.training_step(Views([batch]), StepContext(i, 60, generator=g))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        method.on_step_end(StepContext(i, 60))
        losses.append(out.loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"I-JEPA loss {first:.4f} -> {last:.4f}"
    assert spread() > 0.5 * start, f"target features' spread across samples {start:.3f} -> {spread():.3f}: collapsed"
