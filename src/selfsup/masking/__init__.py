"""Masks for masked and predictive self-supervised methods (MAE, SimMIM, I-JEPA, data2vec).

Pure functions: they take shapes and a :class:`torch.Generator` and return index tensors and
boolean masks. All randomness comes from the ``generator`` argument (never the global RNG), so
the same generator state gives the same masks; outputs live on ``generator.device`` unless a
``device`` is given. Index tensors are ``torch.long`` and ascending per row; boolean masks are
``True`` where a token is hidden (:class:`TokenMask`) or present (``BlockMasks.context_mask``).

- :func:`random_token_mask`: uniform random tokens, exact ratio (MAE, SimMIM).
- :func:`multi_block_mask`: I-JEPA context and target blocks on a patch grid.
- :func:`span_mask`: contiguous spans on a sequence, exact ratio (wav2vec 2.0, data2vec speech).
- :func:`block_mask_2d` / :func:`block_indices_2d`: one rectangle per sample.
- :func:`apply_keep` / :func:`restore`: gather visible tokens, scatter them back with a fill token.
"""

from selfsup.masking.blocks import BlockMasks, block_indices_2d, block_mask_2d, multi_block_mask
from selfsup.masking.spans import span_mask
from selfsup.masking.tokens import TokenMask, apply_keep, random_token_mask, restore

__all__ = [
    "BlockMasks", "TokenMask", "apply_keep", "block_indices_2d", "block_mask_2d", "multi_block_mask",
    "random_token_mask", "restore", "span_mask",
]
