"""FeatureQueue: FIFO order, wrap-around, normalisation, and state saved with checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from selfsup.losses.memory import FeatureQueue


def test_queue_is_first_in_first_out_with_wrap_around() -> None:
    queue = FeatureQueue(size=5, dim=2, normalize=False)
    batches = [torch.full((2, 2), float(i)) for i in range(1, 5)]  # 8 rows into 5 slots
    for batch in batches:
        queue.push(batch)
    # Rows in push order: 1 1 2 2 3 3 4 4; the 5 newest are 2 3 3 4 4, slots wrap at 5.
    values = sorted(queue.features[:, 0].tolist())
    assert values == [2.0, 3.0, 3.0, 4.0, 4.0]
    assert int(queue.filled) == 5 and int(queue.ptr) == 8 % 5


def test_queue_keeps_newest_rows_of_an_oversized_batch() -> None:
    queue = FeatureQueue(size=3, dim=1, normalize=False)
    queue.push(torch.arange(7.0).view(7, 1))
    assert sorted(queue.features.flatten().tolist()) == [4.0, 5.0, 6.0]


def test_queue_normalises_and_detaches() -> None:
    queue = FeatureQueue(size=4, dim=3)
    x = torch.randn(4, 3, requires_grad=True)
    queue.push(x * 5)
    torch.testing.assert_close(queue.features, F.normalize(x.detach(), dim=1))
    assert not queue.features.requires_grad


def test_features_is_a_copy() -> None:
    queue = FeatureQueue(size=4, dim=3)
    snapshot = queue.features
    queue.push(torch.randn(4, 3))
    assert not torch.equal(snapshot, queue.features)


def test_queue_state_round_trips() -> None:
    queue = FeatureQueue(size=6, dim=4)
    queue.push(torch.randn(4, 4))
    other = FeatureQueue(size=6, dim=4)
    other.load_state_dict(queue.state_dict())
    torch.testing.assert_close(other.features, queue.features)
    assert int(other.ptr) == 4 and int(other.filled) == 4


def test_queue_rejects_wrong_dimension() -> None:
    with pytest.raises(ValueError, match="dim 4"):
        FeatureQueue(size=6, dim=4).push(torch.randn(2, 3))
