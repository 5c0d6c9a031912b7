"""Detectors of poisoned training samples, from a trained encoder's embeddings (and images).

Every detector gives each training sample a score (higher = more suspicious); the scan
(:mod:`selfsup.evaluate.scan`) ranks them and flags the top. Four detectors:

- ``patchsearch``: PatchSearch (Tejankar et al. 2023, "Defending Against Patch-based Backdoor
  Attacks on Self-Supervised Learning", CVPR, arXiv 2304.01482), for patch triggers. The
  embeddings (L2-normalised) are clustered with k-means; a "cluster classifier" scores an image by
  the cosine similarity of its embedding to each cluster's (normalised) mean. For a candidate
  image, the window where that classifier's saliency for the image's own cluster is largest is cut
  out as a candidate trigger, pasted at random places on a *flip set* (the images closest to each
  cluster centre, about ``flip_set_size`` of them), and its **poison score** is how many flip
  images it pulls into the candidate's cluster (after minus before; here as a fraction of the
  flip set). A real trigger pulls many; an ordinary patch few. The search is iterative as in the
  paper: each round scores ``samples_per_iteration`` random unscored images of every remaining
  cluster, ranks clusters by their best poison score and drops the least poisonous
  ``remove_per_iteration`` of them, until no remaining cluster has unscored images; images never
  scored keep score 0. Defaults are the paper's (1,000 flip images, 2 samples per round, 25%
  removed per round, a 60 px window on 224 px images: ``window_fraction = 60/224``); the number of
  clusters is one per 100 images (the paper: 1,000 clusters for ImageNet-100's ~127,000).
  *Adaptation*: the paper's saliency is Grad-CAM (of the cluster classifier's cosine logit) on the
  last convolutional block; here it is the magnitude of the gradient, with respect to the input
  pixels (summed over channels), of the embedding's projection on its (unit) cluster centre,
  which needs no knowledge of the backbone's layers and serves every backbone (ResNets and ViTs
  alike). The projection rather than the cosine: see :func:`saliency_windows`. The paper's final step, a poison classifier
  trained on the top-ranked images, is not included: the ranking itself is the output.
- ``spectral``: spectral signatures (Tran, Li and Madry 2018, "Spectral Signatures in Backdoor
  Attacks", NeurIPS, arXiv 1811.00636). Per class, the centred representations' top singular
  vector; a sample's score is its squared projection on it. Without labels, k-means clusters
  stand in for classes; to rank samples of different clusters together, each cluster's scores
  are divided by their median (a score of 50 = fifty times the cluster's typical projection; the
  median is the clean majority's as long as poisons are fewer than half of their cluster). A
  cluster made of poisons alone has no signature to find: the method expects them mixed with
  clean samples of their class.
- ``density``: a cheap baseline, not a published detector: the mean cosine similarity of a
  sample's embedding to its ``k`` nearest neighbours. Poisoned images lie close together in
  representation space once a backdoor has taken hold (Saha et al. 2022, arXiv 2105.10123, the
  premise of PatchSearch's clustering), so a trigger that dominates the embedding makes a tight,
  dense group.
- ``outlier``: outlier detection as a pre-filter of the training data (Paudice et al. 2018,
  "Detection of Adversarial Training Examples in Poisoning Attacks through Anomaly Detection",
  arXiv 1802.03041): the mean Euclidean distance of a sample to its ``k`` nearest neighbours
  after PCA-whitening the embeddings (every direction of the centred embeddings scaled to unit
  variance, directions with a singular value under 1e-3 of the largest dropped: a Mahalanobis
  distance, as in Lee et al. 2018, arXiv 1807.03888, so a small deviation along a direction in
  which clean images hardly vary counts). While an encoder has not absorbed a trigger (a short
  training run), a pasted patch makes its images odd ones out, far from every other image;
  once a backdoor has taken hold they gather instead (``density``, PatchSearch). Which detector
  finds them says whether the trigger has become a feature of the encoder (docs/security.md).

What they can and cannot find: docs/security.md (a frequency trigger such as CTRL's has no
patch to cut out, so PatchSearch is not built for it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.data.poison import paste_patch, random_locations
from selfsup.errors import ConfigError, DataError

DETECTORS = ("patchsearch", "spectral", "density", "outlier")
IMAGES_PER_CLUSTER = 100  # default clusters: one per this many samples (PatchSearch: ~127 on ImageNet-100)
MAX_CLUSTERS = 1000  # PatchSearch's number of clusters


def check_detector(name: str) -> None:
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


def default_num_clusters(num_samples: int) -> int:
    """One cluster per :data:`IMAGES_PER_CLUSTER` samples, between 2 and :data:`MAX_CLUSTERS`."""
    return int(min(MAX_CLUSTERS, max(2, round(num_samples / IMAGES_PER_CLUSTER))))


def normalized(z: torch.Tensor) -> torch.Tensor:
    """Rows of ``z [N, D]`` scaled to unit length (zero rows stay zero)."""
    return F.normalize(z.float(), dim=1)


def kmeans_clusters(z: torch.Tensor, num_clusters: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means on the L2-normalised embeddings ``z [N, D]``: cluster of every sample ``[N]`` and the
    normalised mean of each cluster's members ``[K, D]`` (PatchSearch's cluster classifier)."""
    from sklearn.cluster import KMeans

    n = len(z)
    if not 2 <= num_clusters <= n:
        raise ConfigError(f"the number of clusters must be between 2 and the {n} samples; got {num_clusters}")
    unit = normalized(z)
    model = KMeans(n_clusters=num_clusters, n_init=1, max_iter=50, random_state=seed)
    assign = torch.from_numpy(model.fit_predict(unit.numpy().astype(np.float64)).astype(np.int64))
    centres = torch.zeros(num_clusters, z.shape[1])
    centres.index_add_(0, assign, unit)
    return assign, normalized(centres)


def spectral_scores(z: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
    """Spectral-signature scores ``[N]`` of embeddings ``z [N, D]`` within ``clusters [N]``: the
    squared projection of each centred embedding on its cluster's top singular vector, divided by
    the cluster's median of it (0 for a cluster of one sample)."""
    scores = torch.zeros(len(z), dtype=torch.float64)
    for c in torch.unique(clusters).tolist():
        members = torch.nonzero(clusters == c).flatten()
        if len(members) < 2:
            continue
        centred = z[members].double() - z[members].double().mean(dim=0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        projection = (centred @ vh[0]) ** 2
        typical = projection.median()
        scores[members] = projection / typical if typical > 0 else projection
    return scores


def density_scores(z: torch.Tensor, k: int = 10, block: int = 1024) -> torch.Tensor:
    """Mean cosine similarity ``[N]`` of each embedding to its ``k`` nearest other embeddings."""
    unit = normalized(z)
    n = len(unit)
    k = max(1, min(k, n - 1))
    out = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, block):
        sims = unit[start : start + block] @ unit.T
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + start] = -math.inf  # not itself
        out[start : start + block] = sims.topk(k, dim=1).values.double().mean(dim=1)
    return out


def whitened(z: torch.Tensor, rel_tol: float = 1e-3) -> torch.Tensor:
    """PCA-whitened embeddings ``[N, R]``: the centred ``z [N, D]`` in its principal directions,
    each scaled to unit variance; directions whose singular value is under ``rel_tol`` times the
    largest are dropped (noise)."""
    centred = z.double() - z.double().mean(dim=0)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    keep = max(1, int((s > s[0] * rel_tol).sum())) if s.numel() and s[0] > 0 else 1
    return (u[:, :keep] * math.sqrt(len(z))).float()


def outlier_scores(z: torch.Tensor, k: int = 10, block: int = 1024) -> torch.Tensor:
    """Mean Euclidean distance ``[N]`` of each sample to its ``k`` nearest others in the
    :func:`whitened` embedding space (a k-nearest-neighbour outlier score)."""
    w = whitened(z)
    n = len(w)
    k = max(1, min(k, n - 1))
    out = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, block):
        distance = torch.cdist(w[start : start + block], w)
        rows = torch.arange(distance.shape[0])
        distance[rows, rows + start] = math.inf  # not itself
        out[start : start + block] = distance.topk(k, dim=1, largest=False).values.double().mean(dim=1)
    return out


# ----------------------------------------------------------------------------------------------
# PatchSearch
# ----------------------------------------------------------------------------------------------


@dataclass
class PatchSearchOptions:
    """PatchSearch's settings (defaults: the paper's; clusters: one per 100 images)."""

    num_clusters: int | None = None
    flip_set_size: int = 1000
    window_fraction: float = 60 / 224
    samples_per_iteration: int = 2
    remove_per_iteration: float = 0.25
    batch_size: int = 256
    seed: int = 0


@dataclass
class PatchSearchResult:
    """Poison scores ``[N]`` (fraction of the flip set pulled into the cluster; 0 when not scored),
    which samples were scored ``[N]``, their clusters ``[N]``, the candidate window's top-left
    corner ``[N, 2]`` (-1 when not scored), its side, and the rounds of the search."""

    scores: torch.Tensor
    scored: torch.Tensor
    clusters: torch.Tensor
    windows: torch.Tensor
    window_side: int
    iterations: int
    flip_set_size: int


def window_side(height: int, width: int, fraction: float) -> int:
    """The candidate window's side: ``round(fraction * min(H, W))``, between 1 and the image."""
    return max(1, min(height, width, round(fraction * min(height, width))))


def saliency_windows(
    encoder: torch.nn.Module, x: torch.Tensor, centres: torch.Tensor, side: int,
) -> torch.Tensor:
    """Top-left corners ``[B, 2]`` of the ``side x side`` window of largest saliency in each float
    image ``x [B, C, H, W]`` (0..1) for its cluster centre ``centres [B, D]`` (unit vectors).

    Saliency: ``|d <encoder(x), centre> / dx|`` summed over channels (the adaptation of
    PatchSearch's Grad-CAM described in the module docstring); the window maximises its sum. The
    projection on the centre, not the cosine: an embedding already pointing at its centre has a
    cosine whose gradient along the embedding vanishes, which would hide the very feature (the
    trigger's) that put it there.
    """
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        similarity = (encoder(x).float() * centres.to(x.device)).sum()
        (grad,) = torch.autograd.grad(similarity, x)
    saliency = grad.abs().sum(dim=1, keepdim=True)  # [B, 1, H, W]
    sums = F.avg_pool2d(saliency, side, stride=1)  # [B, 1, H - side + 1, W - side + 1]
    flat = sums.flatten(1).argmax(dim=1)
    cols = sums.shape[-1]
    return torch.stack([flat // cols, flat % cols], dim=1).cpu()


def flip_set(clusters: torch.Tensor, similarity: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """PatchSearch's flip set: the ``size // K`` samples closest to each of the ``K`` cluster
    centres (``similarity [N]`` to their own centre), or, when ``size < K``, the closest sample of
    ``size`` random clusters. Returns sample positions."""
    num_clusters = int(clusters.max()) + 1
    per_cluster = size // num_clusters
    chosen: list[int] = []
    picked = range(num_clusters) if per_cluster > 0 else torch.randperm(num_clusters, generator=generator)[:size].tolist()
    for c in picked:
        members = torch.nonzero(clusters == c).flatten()
        if len(members):
            order = similarity[members].argsort(descending=True)
            chosen.extend(members[order[: max(1, per_cluster)]].tolist())
    return torch.tensor(sorted(chosen), dtype=torch.int64)


@torch.no_grad()
def _assign(encoder: torch.nn.Module, x: torch.Tensor, centres: torch.Tensor, batch_size: int, device: torch.device | str) -> torch.Tensor:
    """Nearest cluster ``[N]`` (cosine) of float images ``x``, embedded in batches."""
    out = []
    for start in range(0, len(x), batch_size):
        z = encoder(x[start : start + batch_size].to(device)).float().cpu()
        out.append((normalized(z) @ centres.T).argmax(dim=1))
    return torch.cat(out)


def patchsearch_scores(
    encoder: torch.nn.Module,
    read_images: Callable[[torch.Tensor], torch.Tensor],
    embeddings: torch.Tensor,
    options: PatchSearchOptions | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> PatchSearchResult:
    """PatchSearch's poison scores of every training sample (see the module docstring).

    Args:
        encoder: the trained encoder (raw samples or float images in [0, 1] -> ``[N, D]``).
        read_images: positions ``[B]`` -> their images as float ``[B, C, H, W]`` in [0, 1].
        embeddings: the encoder's embeddings of all ``N`` training samples ``[N, D]``, in position order.
        options: :class:`PatchSearchOptions`.
        progress: called with a line per round of the search.
    """
    options = options or PatchSearchOptions()
    n = len(embeddings)
    generator = torch.Generator().manual_seed(options.seed)
    num_clusters = options.num_clusters or default_num_clusters(n)
    clusters, centres = kmeans_clusters(embeddings, num_clusters, options.seed)
    own_similarity = (normalized(embeddings) * centres[clusters]).sum(dim=1)
    flips = flip_set(clusters, own_similarity, options.flip_set_size, generator)
    flip_images = read_images(flips)
    flip_before = clusters[flips]
    H, W = flip_images.shape[-2:]
    side = window_side(H, W, options.window_fraction)

    queues = {c: torch.nonzero(clusters == c).flatten()[torch.randperm(int((clusters == c).sum()), generator=generator)].tolist()
              for c in range(num_clusters)}
    candidates = [c for c in range(num_clusters) if queues[c]]
    scores = torch.zeros(n, dtype=torch.float64)
    scored = torch.zeros(n, dtype=torch.bool)
    windows = torch.full((n, 2), -1, dtype=torch.int64)
    encoder.eval()
    iteration = 0
    while True:
        batch = [queues[c].pop(0) for c in candidates for _ in range(min(len(queues[c]), options.samples_per_iteration))]
        if not batch:
            break
        positions = torch.tensor(batch, dtype=torch.int64)
        for start in range(0, len(positions), options.batch_size):
            part = positions[start : start + options.batch_size]
            images = read_images(part)
            corners = saliency_windows(encoder, images.to(device), centres[clusters[part]], side)
            for image, position, (r, c) in zip(images, part.tolist(), corners.tolist()):
                patch = image[:, r : r + side, c : c + side]
                where = random_locations(len(flip_images), H, W, side, generator)
                after = _assign(encoder, paste_patch(flip_images, patch, where), centres, options.batch_size, device)
                cluster = int(clusters[position])
                gained = int((after == cluster).sum()) - int((flip_before == cluster).sum())
                scores[position] = gained / len(flip_images)
                scored[position] = True
                windows[position] = torch.tensor([r, c])
        # Rank the remaining clusters by their most poisonous scored image; drop the least poisonous.
        best = {c: float(scores[(clusters == c) & scored].max()) for c in candidates}
        candidates = sorted(candidates, key=lambda c: best[c], reverse=True)
        drop = int(options.remove_per_iteration * len(candidates))
        if drop:
            candidates = candidates[:-drop]
        candidates = [c for c in candidates if queues[c]]
        if progress is not None:
            top = max(best.values()) if best else 0.0
            progress(f"round {iteration}: {len(batch)} images scored (best poison score {top:.2f}); {len(candidates)} clusters left")
        iteration += 1
    return PatchSearchResult(scores, scored, clusters, windows, side, iteration, len(flip_images))


# ----------------------------------------------------------------------------------------------
# Ranking, flags and how well they find planted samples
# ----------------------------------------------------------------------------------------------


def rank_scores(scores: torch.Tensor) -> torch.Tensor:
    """Rank ``[N]`` of each score, 1 = highest (ties: the earlier sample first)."""
    order = np.argsort(-scores.double().numpy(), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return torch.from_numpy(ranks)


def flag_top(scores: torch.Tensor, rate: float, minimum: float | None = None) -> torch.Tensor:
    """Flags ``[N]`` of the top ``round(rate * N)`` scores (at least one); with ``minimum``, only
    scores above it."""
    if not 0 < rate < 1:
        raise ConfigError(f"--flag-rate must be a fraction in (0, 1), e.g. 0.05; got {rate}")
    count = max(1, round(rate * len(scores)))
    flagged = rank_scores(scores) <= count
    if minimum is not None:
        flagged &= scores > minimum
    return flagged


def detection_metrics(scores: torch.Tensor, flagged: torch.Tensor, poisoned: torch.Tensor) -> dict[str, float]:
    """How well ``scores`` / ``flagged`` (``[N]``) find the ``poisoned`` samples (``[N]`` bool):
    precision and recall of the flags, the flags' false-positive rate, the AUROC of the scores and
    the recall at a 5% false-positive rate (the best threshold with at most 5% of clean samples above it)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = poisoned.bool().numpy()
    if truth.all() or not truth.any():
        raise DataError("detection metrics need both poisoned and clean samples")
    flags = flagged.bool().numpy()
    values = scores.double().numpy()
    fpr, tpr, _ = roc_curve(truth, values)
    return {
        "precision": float((flags & truth).sum() / max(1, flags.sum())),
        "recall": float((flags & truth).sum() / truth.sum()),
        "false_positive_rate": float((flags & ~truth).sum() / (~truth).sum()),
        "auroc": float(roc_auc_score(truth, values)),
        "recall_at_5pct_fpr": float(tpr[fpr <= 0.05].max()),
        "flagged": int(flags.sum()),
        "poisoned": int(truth.sum()),
    }
