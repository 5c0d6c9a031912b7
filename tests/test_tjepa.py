"""T-JEPA on tables: feature-subset masks, the loss against the paper's form, the EMA target encoder,
the context encoder's blindness to target columns, the regularisation token, bad knobs, a short run
whose loss falls without collapse, and CSV -> pretrain (T-JEPA and MAE, ``--backbone auto``) -> embed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.backbones import create_backbone
from selfsup.cli import main
from selfsup.data import load_dataset
from selfsup.errors import ConfigError
from selfsup.losses.predictive import ijepa_loss
from selfsup.methods import METHODS, Encoder, StepContext, create_method
from selfsup.methods.tjepa import feature_subset_masks
from selfsup.rundir import load_run
from selfsup.views import Views

CARDINALITIES = (0, 3, 0, 0, 2, 0, 0, 4)  # columns 1, 4 and 7 categorical
SMALL = {"dim": 32, "depth": 2, "num_heads": 4}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rows(n: int, seed: int = 0, cardinalities: tuple[int, ...] = CARDINALITIES) -> torch.Tensor:
    """Raw table rows: numeric values (some missing) and category indices (some missing)."""
    g = gen(seed)
    x = torch.randn(n, len(cardinalities), generator=g)
    for j, k in enumerate(cardinalities):
        if k:
            x[:, j] = torch.randint(0, k, (n,), generator=g).float()
    x[torch.rand(x.shape, generator=g) < 0.1] = float("nan")
    return x


def schema(cardinalities: tuple[int, ...]) -> dict:
    columns = [
        {"name": f"c{j}", "type": "categorical", "categories": [str(i) for i in range(k)]} if k
        else {"name": f"c{j}", "type": "numeric"}
        for j, k in enumerate(cardinalities)
    ]
    return {"kind": "table", "columns": columns}


def make(cardinalities: tuple[int, ...] = CARDINALITIES, backbone: dict | None = None, **params):
    torch.manual_seed(0)
    F = len(cardinalities)
    net = create_backbone(
        "ft_transformer", (F,), **{**SMALL, "pool": "mean", "cardinalities": cardinalities, **(backbone or {})}
    )
    encoder = Encoder(net, torch.zeros(F), torch.ones(F), (F,), "table", schema(cardinalities))
    return create_method("tjepa", encoder, **params)


def step(method, x: torch.Tensor, seed: int = 0, total: int = 10):
    return method.training_step(Views([x]), StepContext(0, total, generator=gen(seed)))


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize(("F", "share", "sizes"), [(10, (0.2, 0.4), {2, 3, 4}), (5, (0.2, 0.4), {1, 2}),
                                                   (2, (0.2, 0.4), {1}), (40, (0.5, 0.5), {20})])
def test_feature_subset_masks_keep_targets_out_of_the_context(F: int, share: tuple, sizes: set) -> None:
    g = gen()
    seen_context, seen_target = set(), set()
    for _ in range(30):
        masks = feature_subset_masks(16, F, g, num_targets=3, context_share=share, target_share=share)
        c, t = masks.context.shape[1], masks.targets[0].shape[1]
        assert c in sizes and c + t <= F and t >= 1 and len(masks.targets) == 3 and masks.grid == (1, F)
        assert (masks.context.diff(dim=1) > 0).all()  # ascending, no repeats
        for target in masks.targets:
            assert target.shape == (16, t) and (target.diff(dim=1) > 0).all()
            assert ((target >= 0) & (target < F)).all()
            assert not masks.context_mask.gather(1, target).any()  # never a context column
            seen_target |= set(target.flatten().tolist())
        seen_context |= set(masks.context.flatten().tolist())
        assert len({tuple(r) for r in masks.context.tolist()}) > 1 or F == 2  # drawn per row
    assert seen_context == seen_target == set(range(F))  # every column is sometimes each


def test_feature_subset_masks_sizes_follow_the_shares() -> None:
    """Sizes are drawn uniformly among the counts of the shares, and redrawn until they fit."""
    g = gen(1)
    pairs = [feature_subset_masks(4, 20, g, 1, (0.1, 0.3), (0.5, 0.9)) for _ in range(300)]
    contexts = {m.context.shape[1] for m in pairs}
    targets = [m.targets[0].shape[1] for m in pairs]
    assert contexts == {2, 3, 4, 5, 6}
    assert set(targets) <= set(range(10, 19)) and max(targets) == 18  # c + t <= 20
    assert all(m.context.shape[1] + m.targets[0].shape[1] <= 20 for m in pairs)


def test_masks_and_steps_are_reproducible_from_the_seed() -> None:
    a, b, c = (feature_subset_masks(8, 12, gen(s), 4) for s in (3, 3, 4))
    assert torch.equal(a.context, b.context) and all(torch.equal(p, q) for p, q in zip(a.targets, b.targets))
    assert not torch.equal(a.context, c.context)
    x = rows(16)
    losses = [step(make(), x, seed).loss.item() for seed in (0, 0, 1)]
    assert losses[0] == losses[1] and losses[0] != losses[2]


# ----------------------------------------------------------------------------- loss, teacher, context


def test_loss_is_the_mean_squared_error_over_target_columns_and_subsets() -> None:
    """The paper's loss, 1/M sum_m sum_{j in T_m} ||s_hat_j - s_j||^2 (mean over the rows, the target
    columns and the features), written with loops; with subsets of one size it equals the released
    code's MSE over all predicted tokens at once."""
    g = gen(2)
    M, N, t, D = 3, 4, 5, 6
    predictions = [torch.randn(N, t, D, generator=g) for _ in range(M)]
    targets = [torch.randn(N, t, D, generator=g) for _ in range(M)]
    reference = 0.0
    for p, s in zip(predictions, targets):
        block = sum(float(((p[n, j] - s[n, j]) ** 2).sum()) / D for n in range(N) for j in range(t))
        reference += block / (N * t) / M
    assert ijepa_loss(predictions, targets).item() == pytest.approx(reference, rel=1e-5)
    flat = torch.nn.functional.mse_loss(torch.cat(predictions), torch.cat(targets))
    assert ijepa_loss(predictions, targets).item() == pytest.approx(flat.item(), rel=1e-5)


def test_gradients_reach_context_encoder_and_predictor_not_the_ema_target() -> None:
    method = make()
    assert method.encoder is method.teacher.module and method.trained_encoder is method.online
    out = step(method, rows(16))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.predictor.parameters())
    assert all(p.grad is not None for p in method.online.parameters())
    assert method.online.backbone.cls_token.grad.abs().sum() > 0  # the regularisation token is trained
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert out.embeddings.shape == (16, 32) and not out.embeddings.requires_grad
    teacher = [p.clone() for p in method.teacher.parameters()]
    with torch.no_grad():
        for p in method.online.parameters():
            p.add_(0.1)
    method.on_step_end(StepContext(4, 10))
    m = 0.996 + (1.0 - 0.996) * 5 / 10  # linear 0.996 -> 1 over the run
    assert method.momentum == pytest.approx(m)
    for before, after, online in zip(teacher, method.teacher.parameters(), method.online.parameters()):
        torch.testing.assert_close(after, m * before + (1 - m) * online)
    assert method.optimizer_schedules(StepContext(0, 10)) == {"weight_decay": pytest.approx(1e-5)}
    assert method.optimizer_schedules(StepContext(9, 10)) == {"weight_decay": pytest.approx(1e-2)}


def test_the_context_encoder_does_not_see_the_other_columns(monkeypatch) -> None:
    """Through the method's own step: new values in the columns outside each row's context leave
    what the predictor gets from the context encoder unchanged; the targets do change."""
    method = make()
    seen = []
    predictor = method.predictor.forward

    def spy(context, context_positions, target_positions, context_padding=None):
        seen.append((context.detach().clone(), context_positions.clone()))
        return predictor(context, context_positions, target_positions, context_padding)

    monkeypatch.setattr(method.predictor, "forward", spy)
    x = rows(16)
    masks = method.masks(16, x.shape[1], gen(5))
    other = rows(16, seed=9)  # new values (and missing cells) everywhere but in the context columns
    other.scatter_(1, masks.context, x.gather(1, masks.context))
    loss_x, loss_other = step(method, x, seed=5).loss, step(method, other, seed=5).loss
    (z_x, pos_x), (z_other, pos_other) = seen[0], seen[len(seen) // 2]
    M = method.config.num_targets
    assert torch.equal(pos_x, masks.context.repeat(M, 1)) and torch.equal(pos_x, pos_other)
    assert z_x.shape[1] == masks.context.shape[1]  # the context columns only: no [REG] output
    torch.testing.assert_close(z_x, z_other)
    assert loss_x.item() != pytest.approx(loss_other.item())


def test_the_regularisation_token_is_the_backbones_cls_token() -> None:
    """[REG] takes part in both encoders (moving it in either changes the loss), and the paper's
    ablation without it trains too."""
    method, without = make(), make(backbone={"cls_token": False})
    assert method.online.backbone.prefix_tokens(2).shape == (2, 1, 32)
    assert without.online.backbone.prefix_tokens(2) is None
    x = rows(8)
    assert torch.isfinite(step(without, x).loss)
    losses = [step(method, x).loss.item()]
    for encoder in (method.online, method.teacher.module):
        with torch.no_grad():
            encoder.backbone.cls_token.add_(torch.randn(32, generator=gen(1)))  # not a constant: LayerNorm removes that
        losses.append(step(method, x).loss.item())
    assert len({round(v, 6) for v in losses}) == 3, losses


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"context_share": (0.5, 0.2)}, "context_share"),
        ({"target_share": (0.2, 1.0)}, "target_share"),
        ({"predictor_dim": 30}, "predictor_dim"),
        ({"regression": "l3"}, "regression"),
        ({"weight_decay_start": 0.1, "weight_decay_end": None}, "weight_decay"),
    ],
)
def test_bad_knobs_are_one_line_config_errors(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        make(**params)
    assert "\n" not in str(error.value)


def test_declarations_and_a_one_column_table() -> None:
    cls = METHODS.get("tjepa")
    assert cls.modalities == frozenset({"table"}) and "tokens" in cls.requires
    assert cls.probe_pooling == "mean" and cls.num_global_views == 1
    with pytest.raises(ConfigError, match="at least 2 feature columns"):
        make(cardinalities=(0,))
    with pytest.raises(ConfigError, match="tokens"):
        create_method("tjepa", Encoder(create_backbone("table_mlp", (3,)), torch.zeros(3), torch.ones(3), (3,)))


class Shifted(torch.nn.Module):
    """A prediction head whose output is moved by ``shift [L, K]`` (one column's predictions made wild)."""

    def __init__(self, head: torch.nn.Module, shift: torch.Tensor) -> None:
        super().__init__()
        self.head, self.shift = head, shift

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h) + self.shift


def test_mae_on_tables_scores_numeric_columns_only() -> None:
    cards = (0, 3, 0)
    net = create_backbone("ft_transformer", (3,), **SMALL, pool="mean", cardinalities=cards)
    mae = create_method("mae", Encoder(net, torch.zeros(3), torch.ones(3), (3,), "table", schema(cards)))
    assert not mae.norm_pix  # one value per token: its own standardisation would make every target 0
    x = rows(16, cardinalities=cards)
    head = mae.decoder.pred

    def loss(column: int | None) -> float:
        shift = torch.zeros(3, 1)
        if column is not None:
            shift[column] = 100.0
        mae.decoder.pred = Shifted(head, shift)
        out = mae.training_step(Views([x]), StepContext(0, 10, generator=gen()))
        mae.decoder.pred = head
        return out.loss.item()

    base = loss(None)
    assert np.isfinite(base) and base > 0.05
    assert loss(1) == pytest.approx(base)  # a wild prediction for the categorical column costs nothing
    assert loss(0) > base + 100  # the same for a numeric column is scored
    only_categorical = create_backbone("ft_transformer", (3,), **SMALL, cardinalities=(3, 2, 4))
    with pytest.raises(ConfigError, match="every column is categorical"):
        create_method("mae", Encoder(only_categorical, torch.zeros(3), torch.ones(3), (3,), "table", schema((3, 2, 4))))


# ----------------------------------------------------------------------------- learning and the pipeline


def test_loss_falls_without_collapse_on_a_synthetic_table() -> None:
    """Rows whose columns share two latent factors (plus categories cut from them and independent
    noise). A short run: the loss falls, and the target encoder's pooled features keep their
    spread across rows. (A probe above random init takes longer runs: see docs/methods.md.)"""
    g = gen(3)
    n = 512
    latent = torch.randn(n, 2, generator=g)
    numeric = latent @ torch.randn(2, 5, generator=g) + 0.3 * torch.randn(n, 5, generator=g)
    thirds = torch.bucketize(latent[:, 1].contiguous(), torch.tensor([-0.5, 0.5])).float()
    categories = torch.stack([(latent[:, 0] > 0).float(), thirds], 1)
    x = torch.cat([numeric, categories, torch.randn(n, 1, generator=g)], dim=1)  # 8 columns
    cards = (0, 0, 0, 0, 0, 2, 3, 0)
    method = make(cards)
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-5)

    def spread() -> float:
        with torch.no_grad():
            return method.encoder(x).std(dim=0).mean().item()

    start, losses, steps = spread(), [], 40
    for i in range(steps):
        batch = x[torch.randint(0, n, (128,), generator=g)]
        out = method.training_step(Views([batch]), StepContext(i, steps, generator=g))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        method.on_step_end(StepContext(i, steps))
        losses.append(out.loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"T-JEPA loss {first:.4f} -> {last:.4f}"
    assert spread() > 0.5 * start, f"target features' spread across rows {start:.3f} -> {spread():.3f}: collapsed"


def write_csv(path: Path, n: int = 96, seed: int = 0) -> Path:
    """Numeric columns (one with missing cells), a text categorical column (some missing), a label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    lines = ["a,b,color,size,label"]
    colors = np.array(["red", "green", "blue"])
    for i in range(n):
        b = "" if i % 7 == 0 else f"{rng.normal():.4f}"
        color = "" if i % 11 == 0 else colors[(y[i] + (rng.random() < 0.2)) % 3]
        lines.append(f"{y[i] + 0.3 * rng.normal():.4f},{b},{color},{rng.integers(1, 5)},{'xyz'[y[i]]}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", ["tjepa", "mae"])
def test_csv_pretrain_with_auto_backbone_then_embed_new_rows(name: str, tmp_path: Path, capsys) -> None:
    path, run = write_csv(tmp_path / "t.csv"), tmp_path / "run"
    code = main(["pretrain", "--data", f"table:{path}", "--set", "data.label=label", "--method", name,
                 "--backbone", "auto", "--epochs", "1", "--batch-size", "32", "--no-eval",
                 "--set", "train.progress_bar=false", "-o", str(run)])
    assert code == 0, capsys.readouterr().err[-2000:]
    config, method, _ = load_run(run)
    assert config.backbone.name == "ft_transformer"
    assert config.backbone.params["cardinalities"] == [0, 0, 3, 0] and config.backbone.params["pool"] == "mean"
    logged = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    losses = [float(r["loss"]) for r in logged if r["loss"]]
    assert len(losses) == 3 and np.isfinite(losses).all()  # 96 rows in batches of 32
    new = tmp_path / "new.csv"
    new.write_text("a,b,color,size\n0.5,,purple,2\n1.0,0.2,red,1\n")
    out = tmp_path / "e.npy"
    with pytest.warns(UserWarning, match="purple"):
        assert main(["embed", str(run), f"table:{new}", "-o", str(out)]) == 0
    embeddings = np.load(out)
    assert embeddings.shape == (2, 64) and np.isfinite(embeddings).all()
    x = load_dataset(f"table:{new}", reference=method.encoder.data_info).train.x  # read with the run's schema
    assert torch.isnan(x[0, 1]) and torch.isnan(x[0, 2])  # the missing cell and the unseen category
    with torch.no_grad():
        np.testing.assert_allclose(embeddings, method.encoder.eval()(x).numpy(), rtol=1e-4, atol=1e-5)
