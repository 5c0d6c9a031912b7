"""Exponential-moving-average teacher (its momentum schedule is in :mod:`selfsup.core.schedules`).

Used by BYOL (Grill et al. 2020, arXiv 2006.07733), MoCo, DINO and others: the teacher's weights
follow the student's, ``theta_t <- m * theta_t + (1 - m) * theta_s``, and never get gradients.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMATeacher(nn.Module):
    """A frozen copy of ``student`` updated as an exponential moving average of it.

    ``update(student, momentum)``: ``momentum=0`` copies the student, ``momentum=1`` freezes.
    Buffers (batch-norm statistics) are copied as they are.
    """

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(student)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        teacher_params = list(self.module.parameters())
        student_params = list(student.parameters())
        teacher_buffers = list(self.module.buffers())
        student_buffers = list(student.buffers())
        if len(teacher_params) != len(student_params) or len(teacher_buffers) != len(student_buffers):
            raise ValueError("teacher and student have different parameter or buffer lists")
        # theta_t <- m * theta_t + (1 - m) * theta_s, as one fused update over all tensors.
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)
        for teacher_buffer, student_buffer in zip(teacher_buffers, student_buffers):
            teacher_buffer.copy_(student_buffer)

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
