"""Every method trained on 2 processes ends with the weights of 1 process on the same global batch.

Issue 11's contract: ``train.batch_size`` is the global batch, each of N processes takes its share,
and N processes train as one would. Here each method takes a few SGD steps (float64, fixed views)
once on one process with the whole batch and once on two gloo processes with half of it each,
with DDP's gradient averaging and BatchNorm over the global batch (:class:`GlobalBatchNorm`, what
the trainer installs on CPUs). Every parameter and buffer (EMA teachers, queues, centres,
running statistics) must agree.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from gloo import ddp_average, run_on_ranks
from selfsup.backbones import create_backbone
from selfsup.core.distributed import GlobalBatchNorm, convert_to_global_batchnorm, world_size
from selfsup.methods import Encoder, create_method, list_methods
from selfsup.methods.base import METHODS, StepContext
from selfsup.methods.mixed_barlow_twins import MixedBarlowTwins
from selfsup.views import Views, create_views

WORLD, BATCH, STEPS = 2, 32, 3
VECTOR_SHAPE, SERIES_SHAPE = (13,), (2, 24)


def _names() -> list[str]:
    # Masked and predictive methods (token backbones) are checked in their family's tests; the data
    # here are vectors and series, so methods declared for other modalities only (graphs) are left out.
    def fits(cls) -> bool:
        return "tokens" not in cls.requires and (cls.modalities is None or bool(cls.modalities & {"vector", "timeseries"}))

    return [n for n in list_methods() if fits(METHODS.get(n))]


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "ts2vec":
        backbone = create_backbone("ts2vec_encoder", SERIES_SHAPE, hidden_dim=8, output_dim=6, depth=2, dropout=0.0)
        encoder = Encoder(backbone, torch.zeros(2, 1), torch.ones(2, 1), SERIES_SHAPE, "timeseries")
        method = create_method(name, encoder, timestamp_keep_prob=1.0, temporal_unit=1)
    else:
        backbone = create_backbone("mlp", VECTOR_SHAPE, hidden_dims=[16, 16])
        encoder = Encoder(backbone, torch.zeros(VECTOR_SHAPE), torch.ones(VECTOR_SHAPE), VECTOR_SHAPE, "vector")
        method = create_method(name, encoder)
    return convert_to_global_batchnorm(method).double()


def _global_views(name: str, method, step: int) -> Views:
    """The views of the global batch at ``step``, the same in every process."""
    g = torch.Generator().manual_seed(100 + step)
    if name == "ts2vec":  # overlapping crops with fixed offsets (the views' shared draws)
        x = torch.randn(BATCH, *SERIES_SHAPE, generator=g, dtype=torch.float64)
        return Views([x[:, :, 2:17], x[:, :, 9:23]], extras={"overlap": 17 - 9})
    x = torch.randn(BATCH, *VECTOR_SHAPE, generator=g, dtype=torch.float64)
    views = create_views(method.default_views or "auto", "vector")(x, g, method.num_global_views, method.num_local_views)
    views.global_views = [v.double() for v in views.global_views]
    views.local_views = [v.double() for v in views.local_views]
    views.labels = torch.arange(BATCH) % 5
    return views


def _share(views: Views, rank: int, world: int) -> Views:
    part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    return Views(
        [v[part] for v in views.global_views], [v[part] for v in views.local_views],
        None if views.labels is None else views.labels[part], dict(views.extras),
    )


def _block_permutation(self, n: int, device: torch.device):
    """Mixed Barlow Twins on one process, drawing partners as 2 processes do: within each half."""
    mix, perm = MIXED_DRAW(self, n // WORLD, device)
    return mix, torch.cat([perm + r * (n // WORLD) for r in range(WORLD)])


MIXED_DRAW = MixedBarlowTwins._draw


def _train(name: str, rank: int, world: int) -> dict[str, torch.Tensor]:
    method = _build(name)
    groups = method.param_groups(1e-4)
    optimizer = torch.optim.SGD(
        [{k: v for k, v in group.items() if k in ("params", "weight_decay")} for group in groups], lr=0.05, momentum=0.9
    )
    for step in range(STEPS):
        views = _share(_global_views(name, method, step), rank, world)
        if not method.requires_labels:
            views.labels = None
        ctx = StepContext(step, STEPS, torch.Generator().manual_seed(7))
        loss = method.training_step(views, ctx).loss
        optimizer.zero_grad()
        loss.backward()
        if world > 1:  # what DDP does with every gradient
            for p in method.parameters():
                if p.grad is not None:
                    p.grad = ddp_average(p.grad)
        method.before_optimizer_step(ctx)
        optimizer.step()
        method.on_step_end(ctx)
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


def _worker(rank: int) -> dict[str, dict[str, torch.Tensor]]:
    return {"bn": _bn_worker(rank), **{name: _train(name, rank, WORLD) for name in _names()}}


@pytest.fixture(scope="module")
def ranked() -> list[dict[str, dict[str, torch.Tensor]]]:
    """Both checks' results from one pair of processes (starting processes is the slow part)."""
    return run_on_ranks(_worker, WORLD)


pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")


def test_two_processes_train_every_method_as_one_process(ranked, monkeypatch) -> None:
    monkeypatch.setattr(MixedBarlowTwins, "_draw", _block_permutation)
    assert len(_names()) >= 19
    for name in _names():
        single = _train(name, 0, 1)
        for rank in range(WORLD):
            assert ranked[rank][name].keys() == single.keys()
            for key, value in single.items():
                if value.is_floating_point():
                    torch.testing.assert_close(ranked[rank][name][key], value, rtol=1e-7, atol=1e-9, msg=f"{name}: {key}")
                else:
                    assert torch.equal(ranked[rank][name][key], value), f"{name}: {key}"


def _bn_worker(rank: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    bn = GlobalBatchNorm(3).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 4, 4, generator=g, dtype=torch.float64) * 3 + 1
    part = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True)
    y = bn(part)
    (y * torch.arange(y.numel(), dtype=torch.float64).reshape(y.shape)).sum().backward()
    return {"y": y.detach(), "grad": part.grad, "weight_grad": ddp_average(bn.weight.grad),
            "running_var": bn.running_var, "world": torch.tensor(world_size())}


def test_global_batchnorm_equals_batchnorm_on_the_whole_batch(ranked) -> None:
    """Outputs, input gradients, parameter gradients and running statistics of 2 processes with
    4 images each equal ``nn.BatchNorm2d`` on all 8 (each process's loss here is local: the
    statistics' backward alone carries the cross-process terms)."""
    out = [r["bn"] for r in ranked]
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3).double()
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(8, 3, 4, 4, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_(True)
    y = bn(x)
    weights = torch.arange(y[:4].numel(), dtype=torch.float64).reshape(y[:4].shape)
    (y * torch.cat([weights, weights])).sum().backward()
    for rank in range(WORLD):
        assert int(out[rank]["world"]) == WORLD
        torch.testing.assert_close(out[rank]["y"], y[rank * 4 : (rank + 1) * 4].detach())
        # The statistics' backward brings the other process's loss terms to this share's inputs;
        # DDP averages the processes' parameter gradients: the gradient of (sum of losses) / W.
        torch.testing.assert_close(out[rank]["grad"], x.grad[rank * 4 : (rank + 1) * 4])
        torch.testing.assert_close(out[rank]["weight_grad"], bn.weight.grad / WORLD)
        torch.testing.assert_close(out[rank]["running_var"], bn.running_var)


def test_converted_batchnorm_keeps_weights_and_is_batchnorm_on_one_process() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(), torch.nn.BatchNorm1d(12))
    net[1].weight.data.uniform_()
    reference = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(5, 1, 4, 4)
    expected = net(x)
    net.load_state_dict(reference)
    converted = convert_to_global_batchnorm(net)
    assert isinstance(converted[1], GlobalBatchNorm) and isinstance(converted[3], GlobalBatchNorm)
    assert converted.state_dict().keys() == reference.keys()
    torch.testing.assert_close(converted(x), expected)
    converted.eval()
    net_eval = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(), torch.nn.BatchNorm1d(12))
    net_eval.load_state_dict(converted.state_dict())
    torch.testing.assert_close(converted(x), net_eval.eval()(x))
