"""The method contract: what every self-supervised method provides to the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from selfsup.config import build_dataclass
from selfsup.data.base import Batch
from selfsup.data.modalities import get_modality
from selfsup.errors import ConfigError
from selfsup.registry import Registry
from selfsup.views import Views


@dataclass
class StepContext:
    """What the trainer tells a method about the optimiser step at hand.

    One counting convention for every hook: ``step`` is the index of the optimiser step being
    taken (in ``training_step`` and ``before_optimizer_step``) or just taken (in ``on_step_end``),
    from 0; ``total_steps`` is the number of steps of the whole run (``train.max_steps`` when it
    ends the run first). A value for the *next* step is a function of ``step + 1``.

    Attributes:
        generator: the run's seeded generator on the batch's device (the one the views use):
            masks and any other randomness of a method draw from it, so a run is reproducible
            and a resumed run continues the same stream.
        batch: the raw batch (sample indices, labels for evaluation only, later modalities' fields).
    """

    step: int
    total_steps: int
    generator: torch.Generator | None = None
    batch: Batch | None = None

    @property
    def progress(self) -> float:
        """``step / total_steps`` in ``[0, 1]``."""
        return min(max(self.step / max(1, self.total_steps), 0.0), 1.0)

    def generator_on(self, device: torch.device) -> torch.Generator:
        """The run's generator; for a step called without one (tests, direct calls), a generator
        on ``device`` seeded from the global RNG (so ``torch.manual_seed`` still decides)."""
        if self.generator is not None:
            return self.generator
        return torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, (1,))))


@dataclass
class StepOutput:
    """What one training step returns.

    Attributes:
        loss: the scalar to minimise.
        metrics: detached scalars to log (loss terms, schedules), keyed by name.
        embeddings: detached backbone features of the first view ``[N, D]``, for monitors.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)
    embeddings: torch.Tensor | None = None


def backbone_provides(backbone: nn.Module) -> frozenset[str]:
    """What a backbone declares it offers beyond pooled features: ``"tokens"`` (the token
    interface of :mod:`selfsup.backbones.tokens`), ``"timesteps"`` (one feature per timestamp)."""
    return frozenset(getattr(backbone, "provides", frozenset()))


class Encoder(nn.Module):
    """What a run exports: the modality's input standardisation followed by the backbone.

    ``x: raw samples [N, *sample_shape] -> [N, embed_dim]``, as the sources give them (uint8
    images included). The mean and std (per channel for images and series, per feature for
    vectors) are measured on the training data and stored as buffers; the modality (by name,
    stored in the run's checkpoint) says how raw samples become floats and are standardised.
    """

    def __init__(
        self, backbone: nn.Module, mean: torch.Tensor, std: torch.Tensor, input_shape: tuple[int, ...],
        modality: str | None = None, data_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed_dim: int = backbone.embed_dim
        self.input_shape = tuple(input_shape)
        self.modality_name = modality
        self.data_info = data_info  # the source's (a table's schema), stored in the run's checkpoint
        self.modality = get_modality(modality, data_info)
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.standardize(x))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (or already float) samples -> the backbone's input."""
        return self.modality.standardize(self.modality.to_float(x), self.mean, self.std)

    @property
    def provides(self) -> frozenset[str]:
        return backbone_provides(self.backbone)

    def forward_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One feature per timestamp ``[N, T, D]`` (backbones that provide ``"timesteps"``)."""
        return self.backbone.forward_tokens(self.standardize(x), mask=mask)

    def forward_nodes(self, x: Any) -> torch.Tensor:
        """Graph backbones (``"nodes"``): every node's row ``[n, D]`` of the standardised graphs."""
        return self.backbone.forward_nodes(self.standardize(x))

    def tokenize(self, x: torch.Tensor) -> Any:
        """Token backbones: the standardised samples' tokens (:class:`selfsup.backbones.tokens.Tokens`)."""
        return self.backbone.tokenize(self.standardize(x))

    def encode(
        self, tokens: Any, keep: torch.Tensor | None = None, mask: torch.Tensor | None = None,
        mask_token: torch.Tensor | None = None,
    ) -> Any:
        """Token backbones: the transformer on the kept tokens only (``keep [N, L_keep]``), or with
        the ``mask [N, L]`` tokens replaced in place by the method's ``mask_token``."""
        return self.backbone.encode(tokens, keep=keep, mask=mask, mask_token=mask_token)

    def forward_intermediates(self, x: torch.Tensor, layers: Any, **kwargs: Any) -> list[torch.Tensor]:
        """Token backbones: outputs of the transformer blocks ``layers`` (data2vec's targets)."""
        return self.backbone.forward_intermediates(self.standardize(x), layers, **kwargs)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Token backbones: the standardised values under each token ``[N, L, K]`` (MAE's target)."""
        return self.backbone.patchify(self.standardize(x))


class Method(nn.Module):
    """Base of every method: holds the encoder; subclasses add heads, loss and teacher.

    Subclasses set ``Config`` (a dataclass of hyperparameters) and implement
    :meth:`training_step`. Everything the trainer (and the tests) need goes through these
    declarations and hooks, never a method's name, so the trainer has no method-specific branch:

    - ``modalities``: the modalities the method works on (``None``: any);
    - ``requires``: what it needs beyond two views: ``"labels"`` (supervised by design, SupCon:
      the batch's labels reach ``views.labels``), ``"tokens"`` (a token backbone), ``"timesteps"``
      (one feature per timestamp, TS2Vec); checked when the method is built;
    - ``num_global_views`` / ``num_local_views``: the views the method asks for (multi-crop
      methods override ``num_local_views``, usually from their config);
    - ``default_views``: views of its own (TS2Vec's overlapping crops), used when the run's
      views are ``auto``;
    - ``run_defaults``: settings of the published protocol applied under the user's, in the
      Python API as on the command line;
    - ``can_collapse_completely``: False for objectives with no constant-output optimum
      (reconstruction): the run's complete-collapse alarm is then off;
    - ``probe_pooling``: how the representation is pooled for the frozen-feature probes, fine-tuning
      and the exported encoder: ``"mean"`` (average over the patch or time tokens), ``"cls"`` (the
      CLS output), ``None`` (the backbone's configured ``pool``); applied to a backbone with a
      ``pool`` setting that the user left unset (:func:`selfsup.rundir.method_backbone_params`);
    - ``linear_probe_batch_norm``: the linear probe puts a BatchNorm without affine parameters in
      front of the linear layer (MAE's probe) when ``eval.linear_batch_norm`` is ``auto``;
    - ``headline_protocol``: the protocol reported first (``"linear"`` or ``"finetune"``); with
      ``"finetune"`` fine-tuning runs beside the probes when ``eval.finetune`` is ``auto``;
    - ``training_step(views, ctx)``: the loss of one step, with a :class:`StepContext`;
    - ``before_optimizer_step(ctx)``: gradients are ready, the step has not happened (DINO
      freezes its last layer, SwAV its prototypes, early in training);
    - ``on_step_end(ctx)``: after each optimiser step (EMA teachers, schedules, queues);
    - ``optimizer_schedules(ctx)``: optimiser hyperparameters for this step (DINO's weight decay);
    - ``param_groups``: optimiser groups; a group may set its own ``lr_scale``, ``weight_decay``
      or ``lars_exclude`` (biases and norms are kept out of LARS adaptation and weight decay).
    """

    Config: ClassVar[type]
    num_global_views: ClassVar[int] = 2
    modalities: ClassVar[frozenset[str] | None] = None
    requires: ClassVar[frozenset[str]] = frozenset()
    default_views: ClassVar[str | None] = None  # views a method needs when the run says "auto"
    # For a run whose backbone is "auto": the backbone the method's paper uses in place of the
    # modality's default, keyed by that default ({"gcn": "gat"}: GAT where the data would take GCN).
    backbone_choices: ClassVar[dict[str, str]] = {}
    # Settings of the published protocol, applied under the user's (a value left at the library
    # default counts as not given): a partial RunConfig dict ({"train": {"batch_size": 8}}).
    run_defaults: ClassVar[dict[str, Any]] = {}
    # Evaluation that fits the method (see docs/evaluation.md, "Probing masked models").
    probe_pooling: ClassVar[str | None] = None  # "mean", "cls" or None (the backbone's pool)
    linear_probe_batch_norm: ClassVar[bool] = False
    headline_protocol: ClassVar[str] = "linear"  # "linear" or "finetune"
    # Whether the objective has a constant-output optimum. Reconstruction objectives (MAE, SimMIM)
    # do not: only an encoder that keeps information about the input lets the decoder rebuild it;
    # for them the complete-collapse check is off (mean-pooled ViT tokens share a large common
    # component that it would mistake for collapse); the dimensional check stays on.
    can_collapse_completely: ClassVar[bool] = True
    paper: ClassVar[str] = ""

    @property
    def requires_labels(self) -> bool:
        return "labels" in self.requires

    @property
    def num_local_views(self) -> int:
        return 0

    def __init__(self, encoder: Encoder, config: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config
        self.check_backbone(encoder)

    @classmethod
    def check_backbone(cls, encoder: Encoder) -> None:
        """A backbone that lacks what the method ``requires`` is a one-line ConfigError."""
        missing = sorted((cls.requires - {"labels"}) - encoder.provides)
        if missing:
            name = getattr(cls, "registered_name", cls.__name__)
            offers = {"tokens": "vit_tiny (images), patch_transformer (series) or ft_transformer (tables)",
                      "timesteps": "ts2vec_encoder, resnet1d or patch_transformer"}
            hint = "; ".join(f"{m}: use --backbone {offers.get(m, '?')}" for m in missing)
            raise ConfigError(
                f"method {name!r} needs a backbone that provides {', '.join(missing)}, but "
                f"{type(encoder.backbone).__name__} does not ({hint})"
            )

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def on_step_end(self, ctx: StepContext) -> None:
        """Called after each optimiser step (EMA updates, schedules); ``ctx.step`` is the step just taken."""

    def before_optimizer_step(self, ctx: StepContext) -> None:
        """Called with the gradients computed, before the optimiser uses them."""

    def optimizer_schedules(self, ctx: StepContext) -> dict[str, float]:
        """Optimiser hyperparameters for step ``ctx.step``, e.g. ``{"weight_decay": 0.05}``: the
        trainer sets them on every parameter group that decays (weight decay > 0 in
        :meth:`param_groups`). Empty: the optimiser's own values throughout."""
        return {}

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: weights decay, biases and norm parameters (1-d) do not.

        Methods override this to give a head its own learning rate (``lr_scale``) or to keep
        parameters that are set without gradients out of the optimiser.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return split_decay(params, weight_decay)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen-encoder features ``[N, D]`` of raw samples ``x``."""
        return self.encoder(x)


def split_decay(params: list[nn.Parameter], weight_decay: float, **extra: Any) -> list[dict[str, Any]]:
    """Two groups: matrices and kernels with ``weight_decay``; biases and norms (1-d) without,
    and excluded from LARS adaptation (as in BYOL and Barlow Twins)."""
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, **extra})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, **extra})
    return groups


METHODS: Registry[type[Method]] = Registry("method")


register_method = METHODS.register  # @register_method("name") on a Method subclass


def create_method(name: str, encoder: Encoder, **params: Any) -> Method:
    cls = METHODS.get(name)
    config = build_dataclass(cls.Config, params, where=f"method {name!r}")
    return cls(encoder, config)


def list_methods() -> list[str]:
    return METHODS.names()
