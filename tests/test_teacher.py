"""EMA teacher updates and the cosine momentum schedule, against manual computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from selfsup.core.schedules import cosine_momentum
from selfsup.core.teacher import EMATeacher


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _pair() -> tuple[nn.Module, EMATeacher]:
    """A student and a teacher whose weights differ from it (teacher built from another init)."""
    student = _net(0)
    teacher = EMATeacher(_net(1))
    return student, teacher


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_teacher_starts_as_a_copy_and_is_independent() -> None:
    student = _net(0)
    teacher = EMATeacher(student)
    for t, s in zip(teacher.module.parameters(), student.parameters()):
        assert torch.equal(t, s)
        assert t.data_ptr() != s.data_ptr()  # a deep copy, not shared storage
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    assert not torch.equal(next(teacher.module.parameters()), next(student.parameters()))


def test_momentum_zero_copies_the_student_exactly() -> None:
    student, teacher = _pair()
    assert not all(torch.equal(t, s) for t, s in zip(teacher.module.parameters(), student.parameters()))
    teacher.update(student, 0.0)
    for t, s in zip(teacher.module.parameters(), student.parameters()):
        assert torch.equal(t, s)


def test_momentum_one_leaves_the_teacher_unchanged() -> None:
    student, teacher = _pair()
    before = _params(teacher.module)
    teacher.update(student, 1.0)
    for t, b in zip(teacher.module.parameters(), before):
        assert torch.equal(t, b)


@pytest.mark.parametrize("momentum", [0.9, 0.5, 0.996])
def test_momentum_interpolates(momentum: float) -> None:
    student, teacher = _pair()
    before = _params(teacher.module)
    teacher.update(student, momentum)
    for t, b, s in zip(teacher.module.parameters(), before, student.parameters()):
        expected = momentum * b + (1 - momentum) * s.detach()
        torch.testing.assert_close(t, expected, rtol=1e-6, atol=1e-7)


def test_repeated_updates_follow_the_recurrence() -> None:
    student, teacher = _pair()
    expected = [p.double() for p in _params(teacher.module)]
    for step, m in enumerate([0.9, 0.5, 0.99, 0.7]):
        with torch.no_grad():  # the student moves between updates
            for p in student.parameters():
                p.add_(0.1 * (step + 1))
        teacher.update(student, m)
        expected = [m * e + (1 - m) * s.detach().double() for e, s in zip(expected, student.parameters())]
    for t, e in zip(teacher.module.parameters(), expected):
        torch.testing.assert_close(t.double(), e, rtol=1e-5, atol=1e-6)


def test_update_leaves_the_student_unchanged() -> None:
    student, teacher = _pair()
    before = _params(student)
    teacher.update(student, 0.9)
    for s, b in zip(student.parameters(), before):
        assert torch.equal(s, b)


def test_teacher_parameters_are_frozen_and_get_no_gradient() -> None:
    student, teacher = _pair()
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())  # the student is not frozen by the copy
    teacher.update(student, 0.5)
    assert all(not p.requires_grad for p in teacher.parameters())
    x = torch.randn(6, 5)
    out_t = teacher(x)
    assert not out_t.requires_grad  # forward runs without autograd
    loss = (student(x) - out_t).pow(2).mean()
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_teacher_forward_matches_its_module() -> None:
    student, teacher = _pair()
    teacher.eval()
    x = torch.randn(4, 5)
    torch.testing.assert_close(teacher(x), teacher.module(x))


def test_buffers_are_copied() -> None:
    student, teacher = _pair()
    student.train()
    for _ in range(3):  # move the student's running statistics away from the teacher's
        student(torch.randn(16, 5) * 3 + 2)
    student_buffers = dict(student.named_buffers())
    teacher_mean = dict(teacher.module.named_buffers())["1.running_mean"]
    assert not torch.equal(student_buffers["1.running_mean"], teacher_mean)
    teacher.update(student, 0.9)  # whatever the momentum, buffers are copied as they are
    teacher_buffers = dict(teacher.module.named_buffers())
    assert set(teacher_buffers) == set(student_buffers) == {
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    }
    for name, buffer in student_buffers.items():
        assert torch.equal(teacher_buffers[name], buffer), name


def test_mismatched_student_raises() -> None:
    teacher = EMATeacher(_net(0))
    with pytest.raises(ValueError):
        teacher.update(nn.Linear(5, 3), 0.9)


# --------------------------------------------------------------------------- cosine_momentum


def _byol_schedule(step: int, total: int, base: float, final: float) -> float:
    # BYOL (arXiv 2006.07733, sec. 3.2 with a general final value): tau_k = 1 - (1 - tau_base)(cos(pi k/K) + 1)/2.
    return final - (final - base) * (math.cos(math.pi * step / total) + 1) / 2


@pytest.mark.parametrize("base,final", [(0.996, 1.0), (0.9, 0.99), (0.0, 1.0), (0.5, 0.5)])
@pytest.mark.parametrize("total", [1, 10, 1000])
def test_cosine_momentum_endpoints_and_midpoint(base: float, final: float, total: int) -> None:
    assert cosine_momentum(0, total, base, final) == pytest.approx(base, abs=1e-12)
    assert cosine_momentum(total, total, base, final) == pytest.approx(final, abs=1e-12)
    if total % 2 == 0:
        assert cosine_momentum(total // 2, total, base, final) == pytest.approx((base + final) / 2, abs=1e-12)


@pytest.mark.parametrize("base,final", [(0.996, 1.0), (0.9, 0.99), (0.0, 1.0)])
def test_cosine_momentum_monotone_and_matches_formula(base: float, final: float) -> None:
    total = 257
    values = [cosine_momentum(step, total, base, final) for step in range(total + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert all(base - 1e-12 <= v <= final + 1e-12 for v in values)
    for step in (0, 1, 17, 128, 200, 257):
        assert values[step] == pytest.approx(_byol_schedule(step, total, base, final), abs=1e-12)
    # Symmetry of the half-cosine: m(k) - base == final - m(K - k).
    for step in range(total + 1):
        assert values[step] - base == pytest.approx(final - values[total - step], abs=1e-12)


def test_cosine_momentum_default_final_is_one_and_out_of_range_steps_clamp() -> None:
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(150, 100, 0.99, 0.999) == pytest.approx(0.999)
    assert cosine_momentum(-5, 100, 0.99, 0.999) == pytest.approx(0.99)
