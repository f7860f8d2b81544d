"""Fine-tuning policies: which of a source's weights a target model takes, and which it trains.

========================  ==========================================  =========================
policy                    transferred from the source                 trained
========================  ==========================================  =========================
``thesis_cnn``            every layer but the fully-connected ones    everything
``last_conv``             every layer but the fully-connected ones    the last conv layer (+ its
                                                                      BatchNorm) and the
                                                                      fully-connected layers
``linear_probe``          everything but the head                     the head
``full``                  everything but the head                     everything
========================  ==========================================  =========================

The layers not transferred keep the fresh initialisation of a model built with the head seed.
``thesis_cnn`` is the thesis CNN's rule (conv1/conv2 copied, fc1/fc2 new), ``last_conv`` the
thesis VGG rule (features copied, a new classifier, only the last conv layer and the classifier
trained). Both need a convolutional trunk followed by a fully-connected classifier; for
architectures with fully-connected layers inside the trunk (ViT, ConvNeXt) they raise.

Frozen parts stay frozen in train mode too (:func:`train_mode`): a sub-module whose parameters
are all frozen runs in eval mode, so frozen BatchNorm statistics do not drift and stochastic
depth does not act on a frozen backbone.
"""

from __future__ import annotations

from torch import nn

from transferability.models.layers import POLICIES
from transferability.models.spec import ModelError

__all__ = ["POLICIES", "apply_policy", "train_mode", "trainable_names", "transferred_keys"]


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ModelError(f"unknown fine-tuning policy {policy!r}; known: {list(POLICIES)}")


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _conv_trunk_then_classifier(model: nn.Module, policy: str) -> None:
    order = [(name, m) for name, m in model.named_modules()]
    convs = [i for i, (_, m) in enumerate(order) if isinstance(m, nn.Conv2d)]
    linears = [i for i, (_, m) in enumerate(order) if isinstance(m, nn.Linear)]
    # the trunk ends at the last module with parameters that is not fully connected (ViT's
    # conv_proj comes first, then an encoder of attention, LayerNorm and Linear layers)
    trunk_end = max(
        (
            i
            for i, (_, m) in enumerate(order)
            if not isinstance(m, nn.Linear) and any(True for _ in m.parameters(recurse=False))
        ),
        default=-1,
    )
    if not convs or (linears and min(linears) < trunk_end):
        inside = [order[i][0] for i in linears if convs and i < trunk_end][:3]
        raise ModelError(
            f"policy {policy!r} transfers the convolutional trunk and re-initialises the "
            f"fully-connected classifier, but {model.spec.arch} has "
            + (
                f"fully-connected layers inside its trunk ({', '.join(inside)}, ...)"
                if convs
                else "no conv layers"
            )
            + ": use 'linear_probe' or 'full'"
        )


def transferred_keys(model: nn.Module, policy: str, head: str | None) -> list[str]:
    """State-dict keys of ``model`` that ``policy`` copies from the source (``head``: the name of
    the head module, whose parameters are never copied)."""
    _check_policy(policy)
    keys = list(model.state_dict())
    if policy in ("thesis_cnn", "last_conv"):
        _conv_trunk_then_classifier(model, policy)
        new = tuple(f"{name}." for name in _linear_names(model))
    else:
        new = (f"{head}.",) if head else ()
    return [k for k in keys if not k.startswith(new)] if new else keys


def apply_policy(model: nn.Module, policy: str, head: str | None) -> nn.Module:
    """Set ``requires_grad`` as ``policy`` says and put ``model`` in :func:`train_mode`."""
    _check_policy(policy)
    if policy in ("thesis_cnn", "full"):
        trainable = None
    elif policy == "linear_probe":
        trainable = {head}
    else:
        _conv_trunk_then_classifier(model, policy)
        names = [name for name, _ in model.named_modules()]
        modules = dict(model.named_modules())
        last = max(i for i, n in enumerate(names) if isinstance(modules[n], nn.Conv2d))
        trainable = {names[last], *_linear_names(model)}
        following = next(
            (n for n in names[last + 1 :] if list(modules[n].parameters(recurse=False))), None
        )
        if following is not None and isinstance(
            modules[following], nn.modules.batchnorm._BatchNorm
        ):
            trainable.add(following)  # the conv layer's own normalisation
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            p.requires_grad_(trainable is None or name in trainable)
    return train_mode(model)


def train_mode(model: nn.Module, mode: bool = True) -> nn.Module:
    """``model.train(mode)``, except that sub-modules whose parameters are all frozen stay in
    eval mode (their BatchNorm statistics and dropout as at inference)."""
    model.train(mode)
    if mode:
        _freeze_frozen(model)
    return model


def _freeze_frozen(module: nn.Module) -> None:
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        module.eval()
        return
    for child in module.children():
        _freeze_frozen(child)


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad``, in registration order."""
    return [name for name, p in model.named_parameters() if p.requires_grad]
