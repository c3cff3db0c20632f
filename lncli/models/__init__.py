"""Image-classifier architectures behind one registry, with the norm layer injected.

Every builder takes ``num_classes``, ``in_channels`` and ``norm_layer`` (a
callable ``f(num_features) -> nn.Module``, as in torchvision's ``resnet.py``),
so the same architecture is built with BatchNorm or LocalNorm without flags::

    from lncli.models import create_model
    from lncli.nn import get_norm_layer
    model = create_model("resnet20", num_classes=10, in_channels=3,
                         norm_layer=get_norm_layer("localnorm", group_size=16))

:func:`build_model` is the route lncli itself takes (train, checkpoints, convert):
an arch name plus a :class:`~lncli.config.train.NormConfig`::

    from lncli.config.train import NormConfig
    from lncli.models import build_model
    model = build_model("resnet20", norm=NormConfig("localnorm", group_size=16, num_heads=8),
                        num_classes=10, in_channels=3)

Names: resnet20/32/44/56 (He et al. 2016), preact_resnet32 and vgg16_paper (the
LocalNorm authors' CIFAR models), wrn28_10 (RobustBench layout), small_cnn
(Fashion-MNIST on a CPU), resnet18/50 (torchvision), tiny (tests).

:func:`build_model` also builds ``torchvision:NAME``, ``timm:NAME`` and (with
``allow_code=True``) ``package.module:function`` archs: see :mod:`lncli.models.foreign`.
:mod:`lncli.models.weights` checks weights against the data and the built model.
"""

from __future__ import annotations

from lncli.models._registry import UnknownModelError, create_model, list_models, model_kwargs, register_model
from lncli.models.build import build_model, check_arch, norm_layer_for

# Importing the modules registers their models.
from lncli.models import cifar_resnet, preact_resnet, small_cnn, torchvision_resnet, vgg, wrn  # noqa: F401  isort: skip

__all__ = [
    "UnknownModelError",
    "build_model",
    "check_arch",
    "create_model",
    "list_models",
    "model_kwargs",
    "norm_layer_for",
    "register_model",
]
