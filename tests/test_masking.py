"""Tests of selfsup.masking: exact counts, disjoint covering index sets, determinism, block geometry."""

from __future__ import annotations

import pytest
import torch

from selfsup.masking import (
    BlockMasks,
    TokenMask,
    apply_keep,
    block_indices_2d,
    block_mask_2d,
    multi_block_mask,
    random_token_mask,
    restore,
    span_mask,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_valid_token_mask(m: TokenMask, n: int, length: int, hidden: int) -> None:
    """Shapes, dtypes, sortedness, and keep/masked disjoint and covering 0..L-1, agreeing with mask."""
    assert m.keep.shape == (n, length - hidden) and m.masked.shape == (n, hidden) and m.mask.shape == (n, length)
    assert m.keep.dtype == torch.long and m.masked.dtype == torch.long and m.mask.dtype == torch.bool
    assert (m.mask.sum(dim=1) == hidden).all()
    for idx in (m.keep, m.masked):
        assert (idx.diff(dim=1) > 0).all()  # strictly ascending, hence no duplicates
    full = torch.cat([m.keep, m.masked], dim=1).sort(dim=1).values
    assert torch.equal(full, torch.arange(length).expand(n, length))
    assert m.mask.gather(1, m.masked).all() and not m.mask.gather(1, m.keep).any()


# ----------------------------------------------------------------------------- random_token_mask


@pytest.mark.parametrize(("length", "ratio"), [(196, 0.75), (49, 0.6), (10, 0.0), (7, 0.5), (1, 0.0), (10, 0.3)])
def test_random_token_mask_exact_count_and_index_sets(length, ratio):
    m = random_token_mask(8, length, ratio, gen())
    assert_valid_token_mask(m, 8, length, round(ratio * length))


def test_random_token_mask_is_deterministic_and_samples_differ():
    a, b = random_token_mask(16, 64, 0.75, gen(1)), random_token_mask(16, 64, 0.75, gen(1))
    c = random_token_mask(16, 64, 0.75, gen(2))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.keep, b.keep)
    assert not torch.equal(a.mask, c.mask)
    assert not (a.mask == a.mask[:1]).all()  # rows are independent draws, not one mask repeated


def test_random_token_mask_is_uniform_over_positions():
    # Every position should be hidden about mask_ratio of the time (MAE's mask is uniform).
    m = random_token_mask(4000, 16, 0.75, gen(3))
    freq = m.mask.float().mean(dim=0)
    assert torch.allclose(freq, torch.full_like(freq, 0.75), atol=0.04)


def test_random_token_mask_ignores_global_rng():
    torch.manual_seed(0)
    a = random_token_mask(4, 32, 0.5, gen(5))
    torch.manual_seed(123)
    b = random_token_mask(4, 32, 0.5, gen(5))
    assert torch.equal(a.mask, b.mask)


def test_ids_restore_unshuffles_like_mae():
    m = random_token_mask(5, 12, 0.5, gen())
    x = torch.randn(5, 12, 3)
    shuffled = torch.gather(x, 1, m.ids_shuffle[..., None].expand(-1, -1, 3))
    back = torch.gather(shuffled, 1, m.ids_restore[..., None].expand(-1, -1, 3))
    assert torch.equal(back, x)


def test_token_mask_from_mask_round_trip_and_rejects_ragged():
    m = random_token_mask(6, 20, 0.4, gen())
    again = TokenMask.from_mask(m.mask)
    assert torch.equal(again.keep, m.keep) and torch.equal(again.masked, m.masked)
    ragged = torch.zeros(2, 5, dtype=torch.bool)
    ragged[0, 0] = True
    with pytest.raises(ValueError, match="mask"):
        TokenMask.from_mask(ragged)


def test_device_argument_moves_outputs():
    m = random_token_mask(2, 8, 0.5, gen(), device="cpu")
    assert m.keep.device.type == "cpu" and m.mask.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator_gives_cuda_masks():
    g = torch.Generator(device="cuda").manual_seed(0)
    assert random_token_mask(2, 8, 0.5, g).mask.is_cuda
    assert span_mask(2, 30, 0.5, torch.Generator(device="cuda").manual_seed(0), 4).keep.is_cuda
    b = multi_block_mask(2, (14, 14), torch.Generator(device="cuda").manual_seed(0))
    assert b.context.is_cuda and all(t.is_cuda for t in b.targets)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"mask_ratio": -0.1}, "mask_ratio"),
        ({"mask_ratio": 0.95}, "mask_ratio"),  # round(9.5) = 10 of 10 tokens: none left visible
        ({"num_tokens": 0}, "num_tokens"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
    ],
)
def test_random_token_mask_bad_arguments(kwargs, name):
    args = {"num_samples": 2, "num_tokens": 10, "mask_ratio": 0.5, "generator": gen()} | kwargs
    with pytest.raises(ValueError, match=name):
        random_token_mask(**args)


def test_generator_must_be_a_generator():
    with pytest.raises(TypeError, match="generator"):
        random_token_mask(2, 10, 0.5, 0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- apply_keep / restore


def test_apply_keep_and_restore_round_trip():
    m = random_token_mask(4, 10, 0.7, gen())
    x = torch.randn(4, 10, 6)
    kept = apply_keep(x, m.keep)
    assert kept.shape == (4, 3, 6)
    assert torch.equal(kept, torch.stack([x[i, m.keep[i]] for i in range(4)]))
    fill = torch.randn(6)
    full = restore(kept, m.keep, 10, fill)
    assert full.shape == x.shape
    visible = ~m.mask
    assert torch.equal(full[visible], x[visible])
    assert torch.equal(full[m.mask], fill.expand(int(m.mask.sum()), 6))


def test_restore_scalar_fill_extra_dims_and_gradients():
    m = random_token_mask(3, 8, 0.5, gen())
    x = torch.randn(3, 8, 2, 5)  # tokens with more than one trailing dimension
    assert torch.equal(restore(apply_keep(x, m.keep), m.keep, 8, 0.0)[m.mask], torch.zeros(12, 2, 5))

    kept = torch.randn(3, 4, 5, requires_grad=True)
    token = torch.zeros(5, requires_grad=True)  # MAE's learned mask token
    restore(kept, m.keep, 8, token).sum().backward()
    assert torch.equal(kept.grad, torch.ones_like(kept))
    assert torch.equal(token.grad, torch.full((5,), 12.0))  # 3 samples x 4 hidden positions


def test_apply_keep_restore_bad_arguments():
    keep = torch.tensor([[0, 2]])
    with pytest.raises(ValueError, match="keep"):
        apply_keep(torch.randn(2, 4, 3), keep)  # batch mismatch
    with pytest.raises(ValueError, match="keep"):
        apply_keep(torch.randn(1, 4, 3), keep.float())
    with pytest.raises(ValueError, match="num_tokens"):
        restore(torch.randn(1, 2, 3), keep, 1, 0.0)
    with pytest.raises(ValueError, match="fill"):
        restore(torch.randn(1, 2, 3), keep, 4, torch.zeros(4))


# ----------------------------------------------------------------------------- span_mask


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of the maximal runs of True in a 1-D bool tensor."""
    out, current = [], 0
    for v in row.tolist():
        if v:
            current += 1
        elif current:
            out.append(current)
            current = 0
    return out + ([current] if current else [])


@pytest.mark.parametrize(
    ("length", "ratio", "span"), [(100, 0.5, 10), (100, 0.49, 10), (37, 0.3, 4), (20, 0.5, 1), (10, 0.2, 50)]
)
def test_span_mask_exact_count_and_runs(length, ratio, span):
    hidden = round(ratio * length)
    m = span_mask(16, length, ratio, gen(), span_length=span)
    assert_valid_token_mask(m, 16, length, hidden)
    num_spans = -(-hidden // span)
    for row in m.mask:
        lengths = runs(row)
        assert sum(lengths) == hidden and len(lengths) <= num_spans
        if hidden % span == 0:
            assert all(r % span == 0 for r in lengths)  # runs are whole spans, merged when adjacent


def test_span_mask_forms_runs_not_scattered_tokens():
    m = span_mask(32, 200, 0.5, gen(4), span_length=8)
    # 100 hidden positions in 13 spans: at most 13 runs, far fewer than a random mask would give.
    assert max(len(runs(row)) for row in m.mask) <= 13


def test_span_mask_zero_ratio_determinism_and_independence():
    assert span_mask(3, 10, 0.0, gen()).masked.shape == (3, 0)
    a, b = span_mask(8, 64, 0.5, gen(7), 5), span_mask(8, 64, 0.5, gen(7), 5)
    assert torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask, span_mask(8, 64, 0.5, gen(8), 5).mask)
    assert not (a.mask == a.mask[:1]).all()


def test_span_mask_position_frequencies():
    # Uniform arrangements of K=3 spans among U=18 visible positions: position 0 is hidden exactly
    # when the first of the 21 items is a span, probability 3/21; every position is hidden sometimes.
    m = span_mask(4000, 30, 0.4, gen(9), span_length=5)
    freq = m.mask.float().mean(dim=0)
    assert abs(freq[0].item() - 3 / 21) < 0.03 and abs(freq[-1].item() - 3 / 21) < 0.03
    assert freq.min() > 0.1 and abs(freq.mean().item() - 0.4) < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"mask_ratio": 1.0}, "mask_ratio"), ({"length": 0}, "length"), ({"span_length": 0}, "span_length")],
)
def test_span_mask_bad_arguments(kwargs, name):
    args = {"num_samples": 2, "length": 10, "mask_ratio": 0.5, "generator": gen()} | kwargs
    with pytest.raises(ValueError, match=name):
        span_mask(**args)


# ----------------------------------------------------------------------------- blocks


def test_block_mask_and_indices_agree():
    top, left = torch.tensor([0, 2, 5]), torch.tensor([1, 0, 3])
    mask = block_mask_2d((7, 6), top, left, 2, 3)
    idx = block_indices_2d((7, 6), top, left, 2, 3)
    assert mask.shape == (3, 42) and idx.shape == (3, 6) and idx.dtype == torch.long
    assert torch.equal(mask, torch.zeros(3, 42, dtype=torch.bool).scatter_(1, idx, True))
    assert idx[1].tolist() == [12, 13, 14, 18, 19, 20]  # rows 2-3, cols 0-2 of a width-6 grid


def rectangle_of(indices: torch.Tensor, width: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a set of row-major indices, asserting it is exactly a full rectangle."""
    rows, cols = indices // width, indices % width
    top, left = int(rows.min()), int(cols.min())
    h, w = int(rows.max()) - top + 1, int(cols.max()) - left + 1
    expected = block_indices_2d((10**6, width), torch.tensor(top), torch.tensor(left), h, w)
    assert torch.equal(indices.sort().values, expected)
    return top, left, h, w


@pytest.mark.parametrize("grid", [(14, 14), (16, 12), (64, 64)])
def test_multi_block_mask_geometry(grid):
    height, width = grid
    n, num_targets = 8, 4
    masks = multi_block_mask(n, grid, gen(11), num_targets=num_targets)
    assert isinstance(masks, BlockMasks) and len(masks.targets) == num_targets
    th, tw = masks.target_shape
    assert masks.context.dtype == torch.long and masks.context.shape[0] == n
    assert masks.context.shape[1] >= 4  # min_keep
    assert (masks.context.diff(dim=1) > 0).all()
    for target in masks.targets:
        assert target.dtype == torch.long and target.shape == (n, th * tw)  # same size in every sample
        assert ((target >= 0) & (target < height * width)).all()
        for row in target:
            top, left, h, w = rectangle_of(row, width)
            assert (h, w) == (th, tw) and top + h <= height and left + w <= width
    # The context holds no target token, and fits inside the (pre-removal) context block.
    assert not (masks.context_mask & masks.target_mask).any()
    ch, cw = masks.context_shape
    for row in masks.context:
        rows, cols = row // width, row % width
        assert int(rows.max() - rows.min()) < ch and int(cols.max() - cols.min()) < cw


def test_multi_block_mask_scale_and_aspect_within_rounding():
    grid, scale, aspect = (64, 64), (0.15, 0.2), (0.75, 1.5)
    area = grid[0] * grid[1]
    sizes = set()
    for seed in range(30):
        h, w = multi_block_mask(2, grid, gen(seed), target_scale=scale, target_aspect=aspect).target_shape
        sizes.add((h, w))
        # h and w are rounded square roots: each is within 0.5 of its real value.
        assert (h + 0.5) * (w + 0.5) >= scale[0] * area - 1 and (h - 0.5) * (w - 0.5) <= scale[1] * area
        assert (h + 0.5) / (w - 0.5) >= aspect[0] and (h - 0.5) / (w + 0.5) <= aspect[1]
    assert len(sizes) > 5  # the size is redrawn per call (per batch)


def test_multi_block_mask_context_scale_and_full_grid():
    # context_scale (1, 1) is the whole grid; the context is then exactly the non-target tokens.
    masks = multi_block_mask(4, (8, 8), gen(), num_targets=1, target_scale=(0.25, 0.25), context_scale=(1.0, 1.0))
    assert masks.context_shape == (8, 8)
    th, tw = masks.target_shape
    assert masks.context.shape == (4, 64 - th * tw)
    assert torch.equal(masks.context_mask, ~masks.target_mask)


def test_multi_block_mask_truncates_to_smallest_context():
    # With a whole-grid context block, a sample's untruncated context is every non-target token;
    # overlapping targets make those counts differ, and each row keeps its first L_ctx of them.
    masks = multi_block_mask(32, (10, 10), gen(3), num_targets=3, context_scale=(1.0, 1.0))
    full_context = ~masks.target_mask  # [N, H*W]
    counts = full_context.sum(dim=1)
    assert counts.unique().numel() > 1  # the test would be vacuous otherwise
    assert masks.context.shape[1] == int(counts.min())
    for row, full in zip(masks.context, full_context):
        assert torch.equal(row, full.nonzero().squeeze(1)[: masks.context.shape[1]])


def test_multi_block_mask_is_deterministic_and_samples_differ():
    a, b = multi_block_mask(8, (14, 14), gen(5)), multi_block_mask(8, (14, 14), gen(5))
    c = multi_block_mask(8, (14, 14), gen(6))
    assert torch.equal(a.context, b.context) and all(torch.equal(x, y) for x, y in zip(a.targets, b.targets))
    assert not torch.equal(a.target_mask, c.target_mask)
    assert not (a.targets[0] == a.targets[0][:1]).all()  # positions are drawn per sample


def test_multi_block_mask_redraws_until_min_keep():
    # A small context with large targets often leaves too few context tokens; redraws fix that.
    masks = multi_block_mask(
        32, (8, 8), gen(2), num_targets=2, target_scale=(0.3, 0.3), target_aspect=(1.0, 1.0),
        context_scale=(0.5, 0.5), min_keep=12, max_tries=100,
    )
    assert masks.context.shape[1] >= 12
    assert not (masks.context_mask & masks.target_mask).any()


def test_multi_block_mask_gives_up_with_value_error():
    # Targets that cover the whole grid leave no context, however often positions are redrawn.
    with pytest.raises(ValueError, match="min_keep"):
        multi_block_mask(2, (4, 4), gen(), num_targets=1, target_scale=(1.0, 1.0), target_aspect=(1.0, 1.0))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"grid": (0, 14)}, "grid"),
        ({"grid": 14}, "grid"),
        ({"num_targets": 0}, "num_targets"),
        ({"target_scale": (0.2, 0.1)}, "target_scale"),
        ({"target_scale": (0.0, 0.1)}, "target_scale"),
        ({"target_aspect": (-1.0, 2.0)}, "target_aspect"),
        ({"context_scale": (0.9, 1.2)}, "context_scale"),
        ({"min_keep": 0}, "min_keep"),
        ({"min_keep": 500}, "min_keep"),
        ({"num_samples": 0}, "num_samples"),
    ],
)
def test_multi_block_mask_bad_arguments(kwargs, name):
    args = {"num_samples": 2, "grid": (14, 14), "generator": gen()} | kwargs
    with pytest.raises(ValueError, match=name):
        multi_block_mask(**args)
