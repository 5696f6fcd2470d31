"""iCaRL: incremental Classifier and Representation Learning (Rebuffi et al., CVPR 2017).

Class-incremental by design. Three parts, as in the paper's Algorithms 1-5:

* **Representation learning** (Alg. 3): every output is a sigmoid, g_y(x) = sigma(w_y . phi(x)),
  over the columns of all classes seen so far (the concatenated heads). Before task t trains,
  the network is frozen into an old model; the loss of an example x_i is

      - sum_{y new}  [d_{y=y_i} log g_y(x_i) + (1 - d_{y=y_i}) log(1 - g_y(x_i))]
      - sum_{y old}  [q_i^y     log g_y(x_i) + (1 - q_i^y)     log(1 - g_y(x_i))],

  q_i^y = g_y^old(x_i): binary cross-entropy with one-hot targets for the new classes and
  the old model's outputs as distillation targets for the old ones (summed over classes,
  averaged over the batch). The paper trains on the union of the new data and the
  exemplars; the runner hands us batches of new data only, so each step adds r exemplars
  drawn uniformly from memory, r = ceil(batch * |exemplars| / |new training set|): over
  an epoch every exemplar is replayed about once, as in the union.
* **Exemplar management** (Alg. 4-5): a fixed total memory of K images. After a task, with
  t classes seen, every class keeps m = K // t exemplars: old classes drop all but their
  first m (their herding order), each new class gets m chosen by herding on L2-normalised
  features: p_k = argmin_x || mu - (phi(x) + sum_{j<k} phi(p_j)) / k ||, x not chosen yet,
  mu the class's mean normalised feature.
* **Classification** (Alg. 1): nearest mean of exemplars. Class means mu_y are the means of
  the exemplars' normalised features, normalised again; an image is assigned to the class
  whose mean is nearest to its normalised feature. Scores are -||phi(x) - mu_y||^2.
  While a task trains (the runner evaluates every epoch) its classes have no exemplars yet;
  they are represented by the mean over all their training images (the mean that herding
  approximates). With ``flip_means`` (the default, as in the iCaRL code), each class mean is
  taken over the exemplars and their horizontal mirror images: mu_y = normalise(mean of
  phi(x) and phi(flip(x)) over the class's exemplars), i.e. the normalised average of the
  two means; training, herding and the features of the images classified are unflipped.

Task-il is supported by restricting the nearest-mean rule to the task's classes; training is
the same in both settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lifelong.config import check
from lifelong.data.images import ImageSet
from lifelong.errors import ConfigError
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner, MultiHeadNet
from lifelong.learners.cl.memory import TensorStore
from lifelong.tasks import Batch, Task

__all__ = ["ICaRL", "ICaRLConfig", "herding", "nme_scores"]

FEATURE_BATCH = 500  # images per forward pass when computing features for herding / means


@dataclass
class ICaRLConfig(CLConfig):
    # K: the paper's 2,000 exemplars are 20 per class at the end of CIFAR-100's 100 classes;
    # 200 gives the same 20 per class after split-mnist's 10 classes, and is the memory of
    # the other rehearsal baselines here (Mammoth's seq-mnist buffer 200).
    memory: int = 200
    # exemplars replayed per step; None: ceil(batch * |exemplars| / |task training set|),
    # each exemplar about once per epoch as in the paper's union of new data and exemplars
    replay_batch: int | None = None
    # class means over the exemplars and their horizontal flips (the iCaRL code's
    # class_means: (D x alpha + D2 x alpha) / 2 with D2 the flipped exemplars' features)
    flip_means: bool = True

    @classmethod
    def with_memory(cls, n: int) -> dict[str, Any]:
        """Settings that keep at most ``n`` stored examples (``compare --memory``)."""
        return {"memory": n}

    def validate(self) -> None:
        super().validate()
        check(self.memory >= 1, "memory must be >= 1")
        check(self.replay_batch is None or self.replay_batch >= 0, "replay_batch must be >= 0")


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """Indices (min(m, N),) of the exemplars iCaRL's herding picks from ``features`` (N, D),
    in the order picked (the paper's Algorithm 4).

    ``features`` are used as given (iCaRL passes L2-normalised ones); mu is their mean. Step
    k picks the not-yet-chosen x minimising || mu - (phi(x) + sum_{j<k} phi(p_j)) / k ||;
    ties go to the lowest index.
    """
    n = len(features)
    mu = features.mean(0)  # (D,)
    running = torch.zeros_like(mu)  # sum of the chosen features
    free = torch.ones(n, dtype=torch.bool, device=features.device)
    chosen: list[int] = []
    for k in range(1, min(m, n) + 1):
        cost = ((mu - (running + features) / k) ** 2).sum(1)  # (N,)
        cost = cost.masked_fill(~free, float("inf"))
        i = int(cost.argmin())
        chosen.append(i)
        running = running + features[i]
        free[i] = False
    return torch.tensor(chosen, dtype=torch.long)


def nme_scores(h: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Nearest-mean scores (B, S): -||h_b - mean_s||^2 for normalised features ``h`` (B, D)
    and class means ``means`` (S, D), via ||h||^2 - 2 h.mu + ||mu||^2 (no (B, S, D) tensor)."""
    sq = (h * h).sum(1, keepdim=True) - 2 * h @ means.T + (means * means).sum(1)[None, :]
    return -sq


@LEARNERS.register("icarl")
class ICaRL(CLLearner[ICaRLConfig]):
    """iCaRL: herding exemplars, sigmoid distillation, nearest-mean-of-exemplars."""

    Config = ICaRLConfig

    def __init__(self, cfg: ICaRLConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        # rows ordered by class then herding rank: x (images), y (task-local label), task,
        # rank (0-based position in the class's herding order)
        self.exemplars = TensorStore()
        self.old: MultiHeadNet | None = None
        self.old_tasks: list[int] = []
        self.train_set: ImageSet | None = None  # current task's training images (NME meanwhile)
        self._means: torch.Tensor | None = None  # (S, D) class means in column order; a cache

    # -- the contract --------------------------------------------------------------------------
    def begin_task(self, task: Task) -> None:
        self.train_set = task.train  # re-attached on resume too: the means need it
        self._means = None
        if self.resuming(task):
            return
        if self.net.order:  # the network as the previous task left it: q = g^old(x)
            self.old = self.frozen_copy()
            self.old_tasks = list(self.net.order)
        super().begin_task(task)

    def _replay_size(self, n: int) -> int:
        if self.cfg.replay_batch is not None:
            return self.cfg.replay_batch
        if not len(self.exemplars) or self.train_set is None:
            return 0
        return math.ceil(n * len(self.exemplars) / max(len(self.train_set), 1))

    def _columns(self, y: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        """Class-il column (B,) of task-local labels ``y`` of tasks ``tasks``."""
        return y + self._offset_table(y.device)[tasks]

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        self.net.train()
        self._means = None  # the features change
        n = len(batch.y)
        x = batch.x
        col = batch.y + self.offsets[batch.task_id]  # (n,)
        r = self._replay_size(n)
        replay = self.exemplars.sample(r, self.gen) if r > 0 else {}
        self.note_replay(len(replay["y"]) if replay else 0)
        if replay:
            x = torch.cat([x, replay["x"]])
            col = torch.cat([col, self._columns(replay["y"], replay["task"])])
        logits = self.net.all_heads(self.net.features(x))  # (B, S): every class seen so far
        target = F.one_hot(col, logits.shape[1]).to(logits.dtype)
        if self.old is not None:
            with torch.no_grad():
                q = torch.sigmoid(self.old(x))  # (B, S_old): old classes' distillation targets
            target[:, : q.shape[1]] = q
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1)
        loss = self.reduce(bce)
        self.step(loss)
        # "loss" is the current batch's cross-entropy over the seen classes (softmax over
        # the same columns), comparable across learners; "bce" is iCaRL's objective
        ce = F.cross_entropy(logits[:n].detach(), col[:n])
        return {"loss": ce, "bce": loss.detach()}

    def end_task(self, task: Task) -> None:
        self._update_exemplars(task)
        self.train_set = None
        self._means = None
        super().end_task(task)

    # -- exemplars -----------------------------------------------------------------------------
    @torch.no_grad()
    def _normalised_features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised features (N, D) of images ``x`` (N, C, H, W), in eval mode."""
        self.net.eval()
        out = [F.normalize(self.net.features(x[i:i + FEATURE_BATCH].to(self.device)), dim=1)
               for i in range(0, len(x), FEATURE_BATCH)]
        return torch.cat(out)

    @torch.no_grad()
    def _update_exemplars(self, task: Task) -> None:
        classes = sum(self.num_classes.values())
        m = self.cfg.memory // classes
        if m < 1:
            raise ConfigError(f"iCaRL memory {self.cfg.memory} holds less than one exemplar "
                              f"for each of {classes} classes")
        kept = TensorStore()
        if len(self.exemplars):  # reduce: every old class keeps its first m (Alg. 5)
            old = self.exemplars.all()
            rows = (old["rank"] < m).nonzero().flatten()
            kept.append(**{k: v[rows] for k, v in old.items()})
        labels = task.train.labels
        for c in range(task.num_classes):  # construct: herding for each new class (Alg. 4)
            idx = (labels == c).nonzero().flatten().numpy()
            x = task.train.images(idx).to(self.device)
            pick = herding(self._normalised_features(x), m).to(self.device)
            y = torch.full((len(pick),), c, dtype=torch.long, device=self.device)
            kept.append(x=x[pick], y=y, task=torch.full_like(y, task.id),
                        rank=torch.arange(len(pick), device=self.device))
        self.exemplars = kept

    # -- nearest mean of exemplars -------------------------------------------------------------
    @torch.no_grad()
    def _mean_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features (N, D) to average into class means: of ``x`` (N, C, H, W),
        or, with ``flip_means``, the average of those of ``x`` and of its horizontal flip
        (the mean over both sets of a class is then the mean of these rows)."""
        feats = self._normalised_features(x)
        if self.cfg.flip_means:
            feats = 0.5 * (feats + self._normalised_features(x.flip(-1)))
        return feats

    @torch.no_grad()
    def class_means(self) -> torch.Tensor:
        """Class means (S, D) in class-il column order: mean of the exemplars' normalised
        features, normalised; for the task in training (no exemplars yet), the mean over
        all its training images."""
        if self._means is not None:
            return self._means
        store = self.exemplars.all() if len(self.exemplars) else {}
        cols = self._columns(store["y"], store["task"]) if store else None
        feats = self._mean_features(store["x"]) if store else None
        current: torch.Tensor | None = None  # (N, D) features of the current training set
        means = []
        for t in self.net.order:
            for c in range(self.num_classes[t]):
                col = self.offsets[t] + c
                rows = (cols == col).nonzero().flatten() if cols is not None else None
                if rows is not None and len(rows):
                    assert feats is not None  # rows come from the stored exemplars
                    f = feats[rows]
                elif t == self.current_task and self.train_set is not None:
                    if current is None:
                        current = self._mean_features(self.train_set.images())
                    f = current[(self.train_set.labels == c).nonzero().flatten().to(self.device)]
                else:
                    raise RuntimeError(f"iCaRL has no exemplars of class {c} of task {t}")
                means.append(F.normalize(f.mean(0), dim=0))
        self._means = torch.stack(means)
        return self._means

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        h = self._normalised_features(x)  # (B, D)
        scores = nme_scores(h, self.class_means())  # (B, S)
        if task_id is not None:  # task-il: nearest mean among the task's classes only
            o = self.offsets[task_id]
            return scores[:, o:o + self.num_classes[task_id]]
        return self.scatter_global(scores)

    # -- checkpoints ---------------------------------------------------------------------------
    def stored_examples(self) -> int:
        return len(self.exemplars)

    def method_state(self) -> dict[str, Any]:
        return {"exemplars": self.exemplars.state_dict(),
                "old": None if self.old is None else self.old.state_dict(),
                "old_tasks": list(self.old_tasks)}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.exemplars = TensorStore()
        if int(state["exemplars"]["size"]):
            self.exemplars.load_state_dict(state["exemplars"], self.device)
        self.old_tasks = [int(t) for t in state["old_tasks"]]
        self.old = None
        self._means = None
        if state["old"] is not None:
            old = self.frozen_copy()
            for t in [t for t in old.order if t not in self.old_tasks]:
                del old.heads[str(t)]  # the old model had the heads of old_tasks only
            old.order = list(self.old_tasks)
            old.load_state_dict(state["old"])
            self.old = old

