"""Retrieval quality of frozen embeddings: mAP@R with cosine similarity.

Musgrave, Belongie & Lim 2020, "A Metric Learning Reality Check" (ECCV 2020, arXiv 2003.08505),
sec. 3.2: for a query whose class has ``R`` members among the references, retrieve the ``R``
most similar references and score

    AP@R = (1 / R) * sum_{i=1}^{R} P(i),   P(i) = precision at i if the i-th retrieval is correct, else 0,

and mAP@R is the mean of AP@R over queries. Unlike precision@1 it rewards a well-ordered whole
class, and unlike R-precision it rewards putting the correct references first.

Which references: by default the test samples are queries and the TRAIN set is the gallery. The
classes here are shared between train and test (unlike Musgrave et al.'s held-out classes, where
the test set has to serve as its own gallery), so "find the labelled samples of my class" is how
the embedding is used, the same neighbourhoods a kNN classifier reads, and the test set is only
ever a query. ``gallery="test"`` gives Musgrave et al.'s leave-one-out protocol instead (each test
sample queries all other test samples), for comparison with their numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.evaluate.common import ArrayLike, ProbeResult, check_probe_inputs, features_tensor, labels_numpy

_BLOCK_ELEMENTS = 2**24  # entries of one [chunk, N_gallery] similarity block (64 MiB float32)


def average_precision_at_r(
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    gallery_x: torch.Tensor,
    gallery_y: torch.Tensor,
    leave_one_out: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-query AP@R, R-precision, precision@1 and R (Musgrave et al. 2020, arXiv 2003.08505).

    ``query_x`` ``[Q, D]``, ``gallery_x`` ``[G, D]`` float (same device); ``query_y`` ``[Q]``,
    ``gallery_y`` ``[G]`` int64. Similarity is the cosine. With ``leave_one_out`` the queries are
    the gallery (``Q == G``) and each query's own entry is excluded. Queries processed in chunks,
    so only a ``[chunk, G]`` block of similarities exists at a time. Among equally similar
    references the order is ``torch.topk``'s.

    Returns:
        four ``[Q]`` CPU tensors: AP@R, R-precision, precision@1 (float64) and R (int64); a query
        with ``R = 0`` (no reference of its class) gets NaN scores.
    """
    G = gallery_x.shape[0]
    gallery_y = gallery_y.to(gallery_x.device)
    query_y = query_y.to(gallery_x.device)
    # R: references of the query's class (minus the query itself when it is in the gallery).
    classes, gallery_counts = torch.unique(gallery_y, return_counts=True)
    pos = torch.searchsorted(classes, query_y).clamp(max=classes.numel() - 1)
    r = torch.where(classes[pos] == query_y, gallery_counts[pos], torch.zeros_like(pos)) - int(leave_one_out)
    r_max = int(r.max()) if r.numel() else 0
    if chunk_size is None:
        chunk_size = max(1, min(4096, _BLOCK_ELEMENTS // max(G, 1)))
    gallery_n = F.normalize(gallery_x.float(), dim=1)
    ap, r_prec, p1 = [], [], []
    for start in range(0, query_x.shape[0], chunk_size):
        stop = min(start + chunk_size, query_x.shape[0])
        sims = F.normalize(query_x[start:stop].float(), dim=1) @ gallery_n.T  # [c, G]
        if leave_one_out:
            rows = torch.arange(stop - start, device=sims.device)
            sims[rows, rows + start] = -math.inf
        k = max(r_max, 1)
        top_idx = sims.topk(k, dim=1).indices  # [c, k], most similar first
        del sims
        correct = (gallery_y[top_idx] == query_y[start:stop, None]).double()  # rel(i)
        r_chunk = r[start:stop, None].double()
        ranks = torch.arange(1, k + 1, device=correct.device, dtype=torch.float64)
        within_r = (ranks[None, :] <= r_chunk).double()  # only the first R retrievals count
        precision_at_i = correct.cumsum(dim=1) / ranks
        ap.append((precision_at_i * correct * within_r).sum(dim=1) / r_chunk.squeeze(1))
        r_prec.append((correct * within_r).sum(dim=1) / r_chunk.squeeze(1))
        p1.append(correct[:, 0])
    ap_t, r_prec_t, p1_t = (torch.cat(v).cpu() if v else torch.empty(0, dtype=torch.float64) for v in (ap, r_prec, p1))
    missing = (r <= 0).cpu()
    for t in (ap_t, r_prec_t, p1_t):
        t[missing] = math.nan
    return ap_t, r_prec_t, p1_t, r.cpu()


def retrieval_map_at_r(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    gallery: str = "train",
    seed: int = 0,
    *,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> ProbeResult:
    """mAP@R of test queries against the train gallery (Musgrave et al. 2020, arXiv 2003.08505).

    Cosine similarity of the embeddings; no hyperparameter, so nothing is chosen and no label
    influences anything but the score. Test queries whose class has no reference are left out
    (counted in ``details``).

    Args:
        train_x: ``[N_train, D]`` float features (numpy or torch): the gallery by default.
        train_y: ``[N_train]`` integer labels.
        test_x: ``[N_test, D]`` float features: the queries.
        test_y: ``[N_test]`` integer labels; used only for the score.
        gallery: ``"train"`` (test queries against the train set, the default; see the module
            docstring for why) or ``"test"`` (Musgrave et al.'s leave-one-out on the test set).
        seed: unused (no randomness); accepted so every probe has the same signature.
        chunk_size: queries per similarity block (default: blocks of about 16M entries).
        device: where to compute (default: ``train_x``'s device if it is a tensor, else CPU).

    Returns:
        :class:`ProbeResult` named ``"retrieval"`` whose ``accuracy`` is mAP@R (in [0, 1]),
        ``columns={"mAP@R": mAP@R}``, ``chosen={}``, ``val_accuracy`` NaN; ``details`` holds
        precision@1, R-precision, the gallery and the query counts.

    Raises:
        DataError: for mismatched lengths or widths, NaN/inf features, non-integer labels.
        ConfigError: for an unknown ``gallery``, or when no query has a reference of its class.
    """
    tx, ty = features_tensor(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_tensor(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    if gallery not in ("train", "test"):
        raise ConfigError(f"gallery must be 'train' (test queries vs the train set) or 'test' (leave-one-out), got {gallery!r}")
    device = torch.device(device) if device is not None else tx.device
    query_x, query_y = vx.to(device), torch.from_numpy(vy)
    if gallery == "train":
        gallery_x, gallery_y = tx.to(device), torch.from_numpy(ty)
    else:
        gallery_x, gallery_y = query_x, query_y
    ap, r_prec, p1, r = average_precision_at_r(
        query_x, query_y, gallery_x, gallery_y, leave_one_out=gallery == "test", chunk_size=chunk_size
    )
    scored = r > 0
    if not bool(scored.any()):
        raise ConfigError(
            f"no test query has a {gallery} sample of its own class to retrieve, so mAP@R is undefined; "
            + ("use gallery='train'" if gallery == "test" else "check that train and test share classes")
        )
    map_at_r = float(ap[scored].mean())
    return ProbeResult(
        accuracy=map_at_r,
        chosen={},
        val_accuracy=math.nan,
        name="retrieval",
        details={
            "gallery": gallery,
            "similarity": "cosine",
            "precision_at_1": float(p1[scored].mean()),
            "r_precision": float(r_prec[scored].mean()),
            "n_queries": int(scored.sum()),
            "n_queries_without_relevant": int((~scored).sum()),
            "n_gallery": int(gallery_x.shape[0]),
        },
        columns={"mAP@R": map_at_r},
    )
