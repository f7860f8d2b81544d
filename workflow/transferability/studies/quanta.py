"""QUANTA: a layer's transferability measured by a learned source/target mixing weight.

Paper (Orhand et al. 2021, §3, eq. 1): a frozen source model S and a trainable target model T
of the same architecture see the same input; at layer n the target computes

    A_n,T = f(λ_S · Z_n,S + λ_T · Z_n,T),    (λ_S, λ_T) = softmax(v_S, v_T),

where Z are the layers' pre-activations (Z_n,S through S's own layers 1..n, never copied into T)
and f the layer's activation. v is trained with T's parameters on T's loss; λ_S, averaged over
the last 10 epochs of a run and then over runs, is the QUANTA score (§4.1). The paper initialises
λ_S ≈ 0.9 and also studies 0.75 and 0.5; it trains with Adam, lr 1e-4, batch 32, 60 epochs, 30
runs per experiment, for a VGG-like CIFAR network. Here the thesis CNN replaces that network.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from transferability.models.thesis_cnn import ThesisCNN, build_cnn
from transferability.training.loop import Split, evaluate, train_run
from transferability.training.schedule import resolve_checkpoints

__all__ = [
    "HISTORY_COLUMNS",
    "QUANTA_LAYERS",
    "QuantaCNN",
    "quanta_model",
    "quanta_score",
    "train_quanta",
]

#: Layers with weights where a QUANTA layer can sit. ``fc2`` (the output layer) only when source
#: and target have the same number of classes: otherwise Z_S and Z_T have different widths. The
#: paper (§4.1) never assesses its output layer; ``fc2`` is allowed for same-label-space tasks
#: (the paper's AnA control experiments), where mixing the logits is well defined.
QUANTA_LAYERS: tuple[str, ...] = ("conv1", "conv2", "fc1", "fc2")

#: Columns of :func:`train_quanta`'s history, one row per epoch (epoch 0 = before training).
HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch",
    "lambda_s",
    "lambda_t",
    "train_loss",
    "test_loss",
    "test_accuracy",
)


def _check_layer(layer: str) -> None:
    if layer not in QUANTA_LAYERS:
        raise ValueError(f"unknown QUANTA layer {layer!r}; expected one of {list(QUANTA_LAYERS)}")


def _check_lambda_init(lambda_init: float) -> None:
    if not 0.0 < lambda_init < 1.0:
        raise ValueError(f"lambda_init must lie in the open interval (0, 1), got {lambda_init}")


class QuantaCNN(nn.Module):
    """A target :class:`ThesisCNN` with one QUANTA layer fed by a frozen source CNN.

    At ``layer`` the target computes ``f(λ_S·Z_S + λ_T·Z_T)``: ``Z_T`` is the target's
    pre-activation there, ``Z_S`` the source's pre-activation of the same layer computed by the
    source on the same input through its own earlier layers, ``(λ_S, λ_T) = softmax(v)`` and
    ``f`` the layer's ReLU (identity for ``fc2``, which produces logits). Every other layer is
    the target's own.

    The source is a private deep copy: its parameters never require gradients and it stays in
    eval mode whatever :meth:`train` is called with, so its dropout is never active (and Z_S,
    a constant for every trainable parameter, is computed without autograd).

    Parameters
    ----------
    source, target
        Thesis CNNs; ``source`` is copied, ``target`` is used (and trained) as given.
    layer
        One of :data:`QUANTA_LAYERS`.
    lambda_init
        Initial λ_S in (0, 1); ``v = (log λ, log(1 − λ))`` so that ``softmax(v)[0] == λ``.
    """

    def __init__(
        self, source: ThesisCNN, target: ThesisCNN, layer: str, lambda_init: float
    ) -> None:
        super().__init__()
        _check_layer(layer)
        _check_lambda_init(lambda_init)
        if layer == "fc2" and source.num_classes != target.num_classes:
            raise ValueError(
                f"a QUANTA layer at fc2 needs equal class counts, got source "
                f"{source.num_classes} and target {target.num_classes}; use one of "
                f"{[name for name in QUANTA_LAYERS if name != 'fc2']}"
            )
        self.layer = layer
        self.target = target
        self.source = copy.deepcopy(source)
        self.source.requires_grad_(False)
        self.source.eval()
        self.v = nn.Parameter(torch.tensor([math.log(lambda_init), math.log1p(-lambda_init)]))

    @property
    def num_classes(self) -> int:
        return self.target.num_classes

    def train(self, mode: bool = True) -> QuantaCNN:
        super().train(mode)
        self.source.eval()  # frozen: its dropout must never draw masks
        return self

    def lambdas(self) -> torch.Tensor:
        """``(λ_S, λ_T) = softmax(v)``, differentiable with respect to ``v``."""
        return torch.softmax(self.v, dim=0)

    @torch.no_grad()
    def source_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """The source's pre-activation ``Z_S`` of :attr:`layer` (only the layers up to it run)."""
        s = self.source
        z = s.conv1(x)
        if self.layer == "conv1":
            return z
        z = s.conv2(s.pool(torch.relu(z)))
        if self.layer == "conv2":
            return z
        # eval mode: the source's dropout is the identity, so it is skipped outright
        z = s.fc1(s.pool(torch.relu(z)).flatten(1))
        if self.layer == "fc1":
            return z
        return s.fc2(torch.relu(z))

    def forward_layers(
        self, x: torch.Tensor, layers: tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        """Every named layer's output of the target, as :meth:`ThesisCNN.forward_layers`."""
        z_s = self.source_preactivation(x)
        lam = self.lambdas()
        t = self.target

        def act(name: str, z_t: torch.Tensor, f) -> torch.Tensor:
            return f(lam[0] * z_s + lam[1] * z_t) if name == self.layer else f(z_t)

        out: dict[str, torch.Tensor] = {"input": x}
        out["conv1"] = act("conv1", t.conv1(x), torch.relu)
        out["pool1"] = t.pool(out["conv1"])
        out["conv2"] = act("conv2", t.conv2(out["pool1"]), torch.relu)
        out["pool2"] = t.pool(out["conv2"])
        out["fc1"] = act("fc1", t.fc1(t.drop1(out["pool2"].flatten(1))), torch.relu)
        out["fc2"] = act("fc2", t.fc2(t.drop2(out["fc1"])), lambda z: z)
        if layers is None:
            return out
        return {name: out[name] for name in layers}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_layers(x)["fc2"]


def quanta_model(
    source: ThesisCNN | Mapping[str, torch.Tensor],
    num_classes: int,
    layer: str,
    lambda_init: float,
    *,
    seed: int,
) -> QuantaCNN:
    """A :class:`QuantaCNN` whose target is ``build_cnn(num_classes, seed)``.

    Parameters
    ----------
    source
        The pre-trained source CNN, or its state dict (its class count is read from
        ``fc2.weight``). It is copied, never modified.
    num_classes
        Classes of the target task.
    layer
        Where the QUANTA layer sits, one of :data:`QUANTA_LAYERS` (``fc2`` only when
        ``num_classes`` equals the source's).
    lambda_init
        Initial λ_S in (0, 1); the paper uses 0.9 by default and also 0.75 and 0.5 (§3, §4.1).
    seed
        Seed of the target's initial weights.

    Raises
    ------
    ValueError
        Unknown ``layer``, ``lambda_init`` outside (0, 1), ``fc2`` with differing class counts,
        or a state dict lacking ``fc2.weight``.
    """
    _check_layer(layer)
    _check_lambda_init(lambda_init)
    if not isinstance(source, ThesisCNN):
        if "fc2.weight" not in source:
            raise ValueError(f"source state dict lacks 'fc2.weight'; keys: {sorted(source)[:10]}")
        state = source
        source = ThesisCNN(int(state["fc2.weight"].shape[0]))
        source.load_state_dict(dict(state))
    return QuantaCNN(source, build_cnn(num_classes, seed), layer, lambda_init)


def train_quanta(
    model: QuantaCNN,
    train: Split,
    test: Split,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    data_seed: int,
    device: str | torch.device = "cpu",
    weight_decay: float = 0.0,
    eval_every: int = 1,
) -> pd.DataFrame:
    """Train the target's parameters and ``v`` (the source stays frozen) for ``epochs`` epochs.

    Adam on cross-entropy, as the paper (§4.1: Adam, lr 1e-4, for its CIFAR network; ``lr`` is
    the caller's). One epoch is one pass over ``train`` in the order of
    ``batch_order(len(train), batch_size, torch.Generator().manual_seed(data_seed))``; dropout
    masks come from the global generator seeded with ``derive_seed(data_seed, "dropout")``, as in
    :func:`transferability.training.loop.train_run`. ``model`` is trained in place (and moved to
    ``device``).

    ``weight_decay`` (Adam's L2 term) applies to the target's weights only, never to ``v``: decay
    would pull v towards 0, i.e. λ_S towards 0.5, and bias the score. The paper's "weight decay:
    1e-6" is left out by default: it names no framework argument (in Keras of that time
    ``decay`` was a learning-rate decay), and 1e-6 is negligible at lr 1e-4.

    ``eval_every``: the test set is evaluated at epochs 0, ``eval_every``, 2·``eval_every``, …
    and at the last; ``test_loss`` and ``test_accuracy`` are NaN at the other epochs (the score
    needs λ_S only, which every epoch records).

    Returns
    -------
    pandas.DataFrame
        One row per epoch, epoch 0 before training, with :data:`HISTORY_COLUMNS`: ``lambda_s``,
        ``lambda_t`` (softmax(v) at the end of the epoch), ``train_loss`` (mean training-batch
        loss of the epoch, NaN at epoch 0), ``test_loss`` and ``test_accuracy`` (eval mode).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    if len(train) == 0:
        raise ValueError("the training split is empty")
    device = torch.device(device)
    model.to(device=device, memory_format=torch.channels_last).train()
    # Splits move to the device once; batches are then indexed there.
    train = Split(train.images.to(device), train.labels.to(device))
    test = Split(test.images.to(device), test.labels.to(device))
    optimizer = torch.optim.Adam(
        [
            {"params": list(model.target.parameters()), "weight_decay": weight_decay},
            {"params": [model.v], "weight_decay": 0.0},
        ],
        lr=lr,
    )
    # The shared training loop, with a checkpoint at the end of every epoch: same batch order
    # and dropout seeding as every other run of the workflow.
    labels = ["0"] + [f"{epoch}e" for epoch in range(1, epochs + 1)]
    rows = []
    epoch_of_call = iter(range(epochs + 1))  # evaluate_fn is called once per epoch, in order

    def evaluate_fn(m: QuantaCNN) -> dict[str, float]:
        lam_s, lam_t = m.lambdas().detach().cpu().tolist()
        epoch = next(epoch_of_call)
        if epoch % eval_every == 0 or epoch == epochs:
            test_loss, test_accuracy = evaluate(m, test)
        else:
            test_loss = test_accuracy = math.nan
        return dict(lambda_s=lam_s, lambda_t=lam_t, test_loss=test_loss,
                    test_accuracy=test_accuracy)  # fmt: skip

    def on_checkpoint(record, _m) -> None:
        rows.append({"epoch": round(record.checkpoint.epochs), "train_loss": record.train_loss,
                     **record.metrics})  # fmt: skip

    train_run(
        model,
        train,
        resolve_checkpoints(labels, len(train), batch_size),
        batch_size=batch_size,
        optimizer=optimizer,
        data_seed=data_seed,
        evaluate_fn=evaluate_fn,
        on_checkpoint=on_checkpoint,
    )
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


def quanta_score(history: pd.DataFrame, last_epochs: int = 10) -> float:
    """The QUANTA score of one run: mean λ_S over its last ``last_epochs`` trained epochs.

    The paper (§4.1) averages each run's last 10 recorded metrics, then averages over runs; the
    latter is the caller's. Epoch 0 (before training) never counts. A run with fewer trained
    epochs than ``last_epochs`` is scored on all of them.

    Raises
    ------
    ValueError
        ``last_epochs`` < 1, no ``epoch``/``lambda_s`` column, or no epoch after 0.
    """
    if last_epochs < 1:
        raise ValueError(f"last_epochs must be >= 1, got {last_epochs}")
    missing = [c for c in ("epoch", "lambda_s") if c not in history.columns]
    if missing:
        raise ValueError(f"history lacks column(s) {missing}; has {list(history.columns)}")
    trained = history[history["epoch"] > 0].sort_values("epoch")
    if trained.empty:
        raise ValueError("history has no epoch after epoch 0: nothing to score")
    return float(np.mean(trained["lambda_s"].to_numpy(dtype=np.float64)[-last_epochs:]))


#: QUANTA's direction as a transferability metric: a larger λ_S means the target model kept
#: relying on the source's layer (Orhand et al. 2021 §3-4: λ_S measures the layer's
#: transferability).
QUANTA_HIGHER_IS_BETTER = True


def quanta_metric_rows(scores: pd.DataFrame, lambda_init: float) -> pd.DataFrame:
    """The scores of one λ init as rows of the metrics table (metric ``quanta``), so that QUANTA
    enters the correlation tables like any other metric."""
    chosen = scores[np.isclose(scores["lambda_init"], lambda_init)]
    return pd.DataFrame(
        {
            "track": chosen["track"],
            "target": chosen["target"],
            "source": chosen["source"],
            "seed": chosen["seed"],
            "step": chosen["pretrain_step"],
            "layer": chosen["layer"],
            "metric": "quanta",
            "value": chosen["score"],
            "note": "",
        }
    ).reset_index(drop=True)
