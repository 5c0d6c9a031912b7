"""Shared test settings.

Tests run many tiny tensor ops; on a shared 2-core machine one intra-op thread is faster than two
(no thread hand-off per op) and leaves the other core to a parallel job.
"""

import torch

torch.set_num_threads(1)
