"""The masked family (MAE, SimMIM, MixedAE): losses against slow references written from the papers,
what the encoder sees, masked-only losses, gradients, series, reproducibility, clear errors and a
short learning run on digits."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from selfsup.backbones import create_backbone
from selfsup.config import RunConfig
from selfsup.errors import ConfigError
from selfsup.losses.masked import homologous_contrastive_loss, masked_patch_l1, masked_patch_mse, normalize_patches
from selfsup.methods import Encoder, create_method
from selfsup.methods.base import StepContext
from selfsup.methods.mixed_ae import mixing_assignment
from selfsup.views import create_views

METHODS = ["mae", "simmim", "mixed_ae"]
VIT = {"patch_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 4}  # 8x8 images: 16 tokens
PT = {"patch_len": 4, "stride": 4, "dim": 32, "depth": 2, "num_heads": 4, "dropout": 0.0}


def _encoder(kind: str = "vit", **params) -> Encoder:
    torch.manual_seed(0)
    if kind == "vit":
        shape, stats, backbone = (1, 8, 8), (1, 1, 1), create_backbone("vit_tiny", (1, 8, 8), **{**VIT, **params})
    else:
        shape, stats = (3, 24), (3, 1)
        backbone = create_backbone("patch_transformer", shape, **{**PT, "channel_mode": kind, **params})
    return Encoder(backbone, torch.zeros(stats), torch.ones(stats), shape)


def _step(method, x: torch.Tensor, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    views = create_views("masked_crops", "image")(x, g, method.num_global_views)
    return method.training_step(views, StepContext(0, 10, generator=g))


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- slow references


def _ref_patch_target(values: list[float], norm_pix: bool) -> list[float]:
    if not norm_pix:
        return values
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)  # unbiased, as Tensor.var
    return [(v - mean) / math.sqrt(var + 1e-6) for v in values]


def _ref_mse(pred, target, mask, norm_pix: bool) -> float:
    """MAE's forward_loss, one patch at a time; NaN target values are skipped."""
    total, count = 0.0, 0
    for n in range(pred.shape[0]):
        for l in range(pred.shape[1]):
            keep = [k for k in range(pred.shape[2]) if not math.isnan(float(target[n, l, k]))]
            if not mask[n, l] or not keep:
                continue
            t = _ref_patch_target([float(target[n, l, k]) for k in keep], norm_pix)
            total += sum((float(pred[n, l, k]) - tk) ** 2 for k, tk in zip(keep, t)) / len(keep)
            count += 1
    return total / max(count, 1)


def _ref_l1(pred, target, mask) -> float:
    """SimMIM: mean |pred - target| over every observed value of the masked patches."""
    total, count = 0.0, 0
    for n in range(pred.shape[0]):
        for l in range(pred.shape[1]):
            for k in range(pred.shape[2]):
                if mask[n, l] and not math.isnan(float(target[n, l, k])):
                    total += abs(float(pred[n, l, k]) - float(target[n, l, k]))
                    count += 1
    return total / max(count, 1)


def _ref_homologous(features, sources, temperature: float) -> float:
    """Supervised contrastive loss over the tokens of each sequence, the source as label."""
    losses = []
    for g in range(features.shape[0]):
        z = [features[g, i] / features[g, i].norm() for i in range(features.shape[1])]
        L = len(z)
        for i in range(L):
            others = [a for a in range(L) if a != i]
            positives = [p for p in others if sources[g, p] == sources[g, i]]
            if not positives:
                continue
            denominator = sum(math.exp(float(z[i] @ z[a]) / temperature) for a in others)
            terms = [math.log(math.exp(float(z[i] @ z[p]) / temperature) / denominator) for p in positives]
            losses.append(-sum(terms) / len(terms))
    return sum(losses) / max(len(losses), 1)


SIZES = [(2, 4, 3), (3, 7, 5)]


@pytest.mark.parametrize("N,L,K", SIZES)
@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("missing", [False, True])
def test_masked_patch_mse_matches_reference(N: int, L: int, K: int, norm_pix: bool, missing: bool) -> None:
    pred, target = torch.randn(N, L, K, dtype=torch.float64), torch.randn(N, L, K, dtype=torch.float64)
    if missing:  # a missing value, and a patch with no observed value at all
        target[0, 0, 1] = float("nan")
        target[-1, 1] = float("nan")
    mask = torch.rand(N, L) < 0.6
    mask[-1, 1] = mask[0, 0] = True
    got = masked_patch_mse(pred, target, mask, norm_pix)
    assert got.item() == pytest.approx(_ref_mse(pred, target, mask, norm_pix), rel=1e-9)


@pytest.mark.parametrize("N,L,K", SIZES)
def test_masked_patch_l1_matches_reference(N: int, L: int, K: int) -> None:
    pred, target = torch.randn(N, L, K, dtype=torch.float64), torch.randn(N, L, K, dtype=torch.float64)
    target[0, 1, 0] = float("nan")
    mask = torch.rand(N, L) < 0.6
    mask[0, 1] = True
    assert masked_patch_l1(pred, target, mask).item() == pytest.approx(_ref_l1(pred, target, mask), rel=1e-9)


@pytest.mark.parametrize("G,L,D,sources", [(2, 6, 4, 2), (3, 9, 5, 3)])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_homologous_contrastive_matches_reference(G: int, L: int, D: int, sources: int, temperature: float) -> None:
    features = torch.randn(G, L, D, dtype=torch.float64)
    labels = torch.randint(0, sources, (G, L))
    got = homologous_contrastive_loss(features, labels, temperature)
    assert got.item() == pytest.approx(_ref_homologous(features, labels, temperature), rel=1e-9)


def test_homologous_contrastive_closed_form_and_padding() -> None:
    """Tokens equal within a source and orthogonal across: every positive has logit 1/t, every
    negative 0, so the loss is ``-log(e^(1/t) / ((s - 1) e^(1/t) + L - s))``."""
    L, s, t = 8, 2, 0.2
    labels = torch.arange(L) // s  # 4 sources of 2 tokens
    features = torch.eye(L)[labels].unsqueeze(0).double()
    expected = -math.log(math.exp(1 / t) / ((s - 1) * math.exp(1 / t) + L - s))
    assert homologous_contrastive_loss(features, labels.unsqueeze(0), t).item() == pytest.approx(expected)
    # A padding token takes no part: the loss of the others is that of the sequence without it.
    padded = torch.cat([features, torch.randn(1, 1, L, dtype=torch.float64)], dim=1).requires_grad_()
    valid = torch.ones(1, L + 1, dtype=torch.bool)
    valid[0, -1] = False
    loss = homologous_contrastive_loss(padded, torch.cat([labels, torch.tensor([0])]).unsqueeze(0), t, valid)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(padded.grad).all() and padded.grad[0, -1].abs().sum() == 0


def test_reconstruction_losses_closed_forms() -> None:
    target = torch.randn(3, 5, 4)
    mask = torch.ones(3, 5, dtype=torch.bool)
    assert masked_patch_mse(target, target, mask, norm_pix=False) == 0
    assert masked_patch_mse(normalize_patches(target), target, mask, norm_pix=True) == 0
    assert masked_patch_l1(target, target, mask) == 0
    # A patch a + b * z, z of mean 0 and unbiased variance 1, normalises to z (up to the eps).
    z = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    z = z / z.std()
    patch = (3.0 + 2.0 * z).view(1, 1, 4)
    assert torch.allclose(normalize_patches(patch), z.view(1, 1, 4), atol=1e-5)
    # MSE against zeros is then the mean of z^2 = (K - 1) / K.
    assert masked_patch_mse(torch.zeros(1, 1, 4), patch, torch.ones(1, 1, dtype=torch.bool)).item() == pytest.approx(0.75, rel=1e-4)


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_losses_ignore_visible_patches(loss: str) -> None:
    """Changing the prediction at visible (unmasked) patches does not change the loss."""
    pred, target = torch.randn(4, 6, 3), torch.randn(4, 6, 3)
    mask = torch.rand(4, 6) < 0.5
    mask[0, 0], mask[0, 1] = True, False
    fn = (lambda p: masked_patch_mse(p, target, mask)) if loss == "mse" else (lambda p: masked_patch_l1(p, target, mask))
    changed = torch.where(mask.unsqueeze(-1), pred, pred + 10 * torch.randn_like(pred))
    assert fn(changed) == fn(pred)
    assert fn(torch.where(mask.unsqueeze(-1), pred + 1, pred)) != fn(pred)


# ----------------------------------------------------------------------------- the methods


def test_mae_encoder_sees_only_the_kept_tokens() -> None:
    method = create_method("mae", _encoder(), mask_ratio=0.75)
    seen = []
    hook = method.encoder.backbone.blocks[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    out = _step(method, _rand(5, 1, 8, 8))
    hook.remove()
    assert seen == [torch.Size([5, 4, 32])]  # 16 tokens, 12 hidden
    assert out.metrics["mask_ratio"] == 0.75
    assert out.embeddings.shape == (5, 32) and not out.embeddings.requires_grad


@pytest.mark.parametrize("ratio,hidden", [(0.5, 8), (0.6, 10), (0.9, 14)])
def test_mask_ratio_is_respected(ratio: float, hidden: int) -> None:
    for name in ("mae", "simmim"):
        out = _step(create_method(name, _encoder(), mask_ratio=ratio), _rand(4, 1, 8, 8))
        assert out.metrics["mask_ratio"] == hidden / 16


def test_simmim_encodes_every_position_with_the_mask_token() -> None:
    method = create_method("simmim", _encoder())
    seen = []
    original = method.encoder.encode

    def spy(tokens, keep=None, mask=None, mask_token=None):
        seen.append((tokens.x.shape, keep, mask.sum(dim=1).tolist(), mask_token is method.mask_token))
        return original(tokens, keep=keep, mask=mask, mask_token=mask_token)

    method.encoder.encode = spy
    _step(method, _rand(3, 1, 8, 8))
    assert seen == [(torch.Size([3, 16, 32]), None, [10, 10, 10], True)]  # round(0.6 * 16) hidden per sample


def test_mixed_ae_mixes_within_groups() -> None:
    assign = mixing_assignment(5, 16, 4, torch.Generator().manual_seed(0))
    assert assign.shape == (5, 16)
    assert all(torch.bincount(row, minlength=4).tolist() == [4, 4, 4, 4] for row in assign)
    assert not torch.equal(assign[0], assign[1])  # a new draw per group
    uneven = mixing_assignment(2, 7, 3, torch.Generator().manual_seed(0))
    assert all(sorted(torch.bincount(row, minlength=3).tolist()) == [2, 2, 3] for row in uneven)
    # The encoder gets one sequence per group of 4 (a batch of 6 fills its second group with samples 0, 1).
    method = create_method("mixed_ae", _encoder())
    seen = []
    hook = method.encoder.backbone.blocks[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    out = _step(method, _rand(6, 1, 8, 8))
    hook.remove()
    assert seen == [torch.Size([2, 16, 32])]
    assert out.embeddings.shape == (6, 32) and torch.isfinite(out.loss)
    assert set(out.metrics) == {"reconstruction", "homologous"}


@pytest.mark.parametrize("name", METHODS)
def test_gradients_reach_encoder_and_heads(name: str) -> None:
    method = create_method(name, _encoder())
    _step(method, _rand(8, 1, 8, 8)).loss.backward()
    missing = [n for n, p in method.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("mode", ["independent", "mixed"])
def test_series_path_runs_with_missing_steps(name: str, mode: str) -> None:
    method = create_method(name, _encoder(mode))
    x = torch.randn(6, 3, 24, generator=torch.Generator().manual_seed(0))
    x[0, :, 3:9] = float("nan")  # missing steps: left out of the loss
    x[1, :, :] = float("nan")  # a series with nothing observed
    out = _step(method, x)
    assert torch.isfinite(out.loss) and out.embeddings.shape == (6, 32)
    out.loss.backward()
    missing = [n for n, p in method.named_parameters() if p.grad is None]
    assert missing == []  # the channel merge too: the methods predict from merged tokens


@pytest.mark.parametrize("name", METHODS)
def test_reproducible_under_a_seeded_generator(name: str) -> None:
    method = create_method(name, _encoder())
    x = _rand(8, 1, 8, 8)
    first, again, other = _step(method, x, seed=1).loss, _step(method, x, seed=1).loss, _step(method, x, seed=2).loss
    assert first == again and first != other


def test_views_and_optimiser_settings() -> None:
    views = create_views("masked_crops", "image")
    g = torch.Generator().manual_seed(0)
    images = _rand(4, 1, 8, 8)
    out = views(images, g, 2)
    assert len(out.global_views) == 2 and out.global_views[0].shape == images.shape
    assert not torch.equal(out.global_views[0], out.global_views[1])
    series = torch.randn(4, 3, 24)
    assert torch.equal(views(series, g, 1).global_views[0], series)  # series are left as they are
    for name, betas in [("mae", (0.9, 0.95)), ("simmim", (0.9, 0.999)), ("mixed_ae", (0.9, 0.95))]:
        method = create_method(name, _encoder())
        assert method.num_global_views == 1 and method.default_views == "masked_crops"
        assert all(group["betas"] == betas for group in method.param_groups(0.05))


@pytest.mark.parametrize(
    "name,params,words",
    [
        ("mae", {"mask_ratio": 1.0}, "mask_ratio"),
        ("simmim", {"mask_ratio": 0.0}, "mask_ratio"),
        ("mae", {"mask_ratio": 0.01}, "hides 0 of"),
        ("mae", {"decoder": {"dim": 30, "num_heads": 4}}, "decoder.dim"),
        ("mixed_ae", {"mix_size": 1}, "mix_size"),
        ("mixed_ae", {"mix_size": 20}, "mix_size"),
        ("mixed_ae", {"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_knobs_are_one_line_config_errors(name: str, params: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as error:
        create_method(name, _encoder(), **params)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def digits():
    from selfsup.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="module")
def vit_config():
    def make(name: str) -> RunConfig:
        # A small decoder keeps the test short (the default, 128 wide and 4 deep, learns as well but 3x slower).
        params = {} if name == "simmim" else {"decoder": {"dim": 64, "depth": 2}}
        config = RunConfig.from_dict({
            "data": "digits", "method": {"name": name, "params": params},
            "backbone": {"name": "vit_tiny", "params": {"patch_size": 2, "embed_dim": 64, "depth": 2, "num_heads": 4}},
        })
        config.train.epochs, config.train.batch_size, config.train.lr, config.train.warmup_epochs = 6, 128, 1e-3, 1
        config.train.progress_bar, config.train.monitor_every_n_epochs, config.train.monitor_samples = False, 6, 256
        return config

    return make


@pytest.fixture(scope="module")
def vit_baseline(digits, vit_config) -> float:
    from selfsup.train.runner import build_method, input_statistics

    torch.manual_seed(0)
    mean, std = input_statistics(digits.train)
    return _probe(build_method(vit_config("mae"), digits.train.sample_shape, mean, std, "image").eval(), digits)


def _probe(method, digits) -> float:
    from selfsup.evaluate import linear_probe
    from selfsup.evaluate.embed import embed_in_batches

    def features(split):
        return embed_in_batches(method.encoder, split.x).numpy()

    return linear_probe(features(digits.train), digits.train.y, features(digits.test), digits.test.y).accuracy


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_learns_on_digits(name: str, digits, vit_config, vit_baseline: float, tmp_path: Path) -> None:
    """6 epochs on 8x8 digits (16 tokens of 2x2 px) through the real training path, one view of the
    method's own masked_crops: the linear probe beats the same ViT at random init (0.864 there;
    after: MAE 0.90, SimMIM 0.90, MixedAE 0.89 when measured)."""
    from selfsup.train.runner import pretrain

    torch.manual_seed(0)
    result = pretrain(vit_config(name), run_dir=tmp_path / name, evaluate=False)
    accuracy = _probe(result.method.eval(), digits)
    assert accuracy > vit_baseline + 0.01, f"ViT {name}: linear probe {accuracy:.3f} not above random init {vit_baseline:.3f}"
    # Reconstruction has no constant-output optimum: the complete-collapse check is off, the dimensional one on.
    collapse = result.metrics["collapse"]
    assert collapse["std_threshold"] == 0.0 and collapse["rank_fraction"] > 0 and not collapse.get("detected")


# ----------------------------------------------------------------------------- distributed

DDP_BATCH, DDP_STEPS = 8, 2


@pytest.mark.parametrize("name", ["mae", "simmim"])
def test_processes_sharing_the_batch_train_as_one(name: str, monkeypatch) -> None:
    """MAE and SimMIM average the same per-sample terms (every sample hides as many tokens) and
    gather nothing, so 2 processes with half the batch each and DDP's gradient mean take the steps
    of 1 process on the whole batch. The processes are simulated in one (DDP's all-reduce is the
    mean of their gradients; a gloo run costs 20 s of process start-up). Both draw the masks of
    the global batch and take their rows. MixedAE mixes within each process's share: by design it
    is not split-invariant."""
    import selfsup.methods.mae as mae_module
    from selfsup.masking import TokenMask, random_token_mask
    from selfsup.views import Views

    rank = {"value": 0}

    def global_masks(num_samples, num_tokens, ratio, generator, device=None):
        full = random_token_mask(DDP_BATCH, num_tokens, ratio, torch.Generator().manual_seed(7))
        rows = slice(rank["value"] * num_samples, (rank["value"] + 1) * num_samples)
        return TokenMask(full.keep[rows], full.masked[rows], full.mask[rows])

    monkeypatch.setattr(mae_module, "random_token_mask", global_masks)

    def train(world: int) -> list[torch.Tensor]:
        method = create_method(name, _encoder()).double()
        optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
        share = DDP_BATCH // world
        for step in range(DDP_STEPS):
            x = torch.rand(DDP_BATCH, 1, 8, 8, generator=torch.Generator().manual_seed(step), dtype=torch.float64)
            grads = []
            for r in range(world):
                rank["value"] = r
                method.zero_grad()
                views = Views([x[r * share : (r + 1) * share]])
                method.training_step(views, StepContext(step, DDP_STEPS, torch.Generator())).loss.backward()
                grads.append([p.grad.clone() for p in method.parameters()])
            for p, *per_rank in zip(method.parameters(), *grads):
                p.grad = torch.stack(per_rank).mean(dim=0)  # DDP's all-reduce mean
            optimizer.step()
        return [p.detach() for p in method.parameters()]

    for one, two in zip(train(1), train(2)):
        assert torch.allclose(one, two, atol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "mse_norm", "l1"])
def test_missing_target_values_give_finite_gradients(loss: str) -> None:
    """A NaN target (a missing series step) is left out of the loss and of its gradient: a NaN
    inside the difference would make the gradient NaN even where it is masked out (0 * NaN), as
    MAE on JapaneseVowels (NaN-padded series) found at its first step."""
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 4, generator=g, requires_grad=True)
    target = torch.randn(2, 3, 4, generator=g)
    target[0, 1, 2:] = float("nan")
    target[1, 2] = float("nan")  # a whole patch missing
    mask = torch.tensor([[True, True, False], [False, True, True]])
    fn = {"mse": lambda: masked_patch_mse(pred, target, mask, norm_pix=False),
          "mse_norm": lambda: masked_patch_mse(pred, target, mask, norm_pix=True),
          "l1": lambda: masked_patch_l1(pred, target, mask)}[loss]
    value = fn()
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(pred.grad).all()
    assert (pred.grad[0, 1, 2:] == 0).all() and (pred.grad[1, 2] == 0).all() and (pred.grad[0, 2] == 0).all()
