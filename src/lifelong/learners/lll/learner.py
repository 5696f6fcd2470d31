"""Lightweight Lifelong Learner (LLL; SKILL, Ge et al. 2023, sections 5 and 7), one agent.

    backbone       frozen pretrained network; it never changes (checked by its fingerprint)
    begin_task(t)  a new linear head on the pooled features (+ beneficial biases, BB); with
                   ``name_init``, classes similar by name to learned ones start from their
                   weights (7.2)
    observe        an Adam step on the head (and BB) for one mini-batch:
                   no BB: the task's training and validation features are computed in
                   begin_task, in one backbone pass, and looked up by row;
                   partial BB: biases in the last stages only, their input cached;
                   full BB: every conv layer's biases, full forward and backward per step
    task_done      early stopping: ``patience`` epochs without validation improvement (the
                   original code: up to 100 epochs, patience 10, keep the best state)
    end_task(t)    keep the best head/BB; with ``h2t``, retrain the head on features plus
                   the inner maps chosen by the largest biases (7.3); fit the task anchor
                   (GMMC or Mahalanobis) on raw training features; pack it all in a bundle
    predict(x)     task given: that task's head and BB. No task: the task mapper picks a
                   task per input, then that task's head and BB give the class.

Bundles from other agents (``import_bundle``) join the head bank and the task mapper in the
same way; nothing received is unpickled (``lifelong.learners.lll.bundle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.backbones import BACKBONES, Backbone
from lifelong.backbones.engine import make_engine
from lifelong.config import Config, check
from lifelong.errors import ConfigError
from lifelong.learners.base import LEARNERS, Learner, LearnerContext
from lifelong.learners.lll.admission import Admission
from lifelong.learners.lll.anchors import (
    GMMCAnchor,
    GMMCMapper,
    MahaAnchor,
    MahaMapper,
    fit_gmmc,
    fit_maha,
)
from lifelong.learners.lll.bundle import Bundle, BundleError, Expect, decode, digest, encode
from lifelong.learners.lll.cost import gmmc_fit_macs, gmmc_map_macs, maha_map_macs
from lifelong.learners.lll.features import FeatureExtractor
from lifelong.learners.lll.h2t import pool_size, select_channels
from lifelong.learners.lll.lda import LDAAnchor, LDAMapper, fit_lda
from lifelong.learners.lll.names import MAX_NAME, task_key
from lifelong.tasks import Batch, Task

__all__ = ["LLL", "LLLConfig", "Head"]


@dataclass
class LLLConfig(Config):
    backbone: str = "efficientnet-lite0"
    # The paper's backbone took 299 px (xception); EfficientNet-Lite0 is trained at 224.
    # 96 px is our CPU default (docs/skill.md has the speeds).
    image_size: int = 96
    bb: Literal["none", "partial", "full"] = "none"
    bb_stages: int = 3  # partial BB: biases only in the backbone's last N stages
    # "lda": tied-covariance LDA from exactly pooled per-task statistics (lll.lda; not in
    # the paper)
    mapper: Literal["gmmc", "maha", "lda"] = "gmmc"
    gmm_components: int = 25  # k of the paper
    gmm_reg_covar: float = 1e-4  # variance floor of the mixtures (see anchors.fit_gmmc)
    maha_samples: int = 5  # m samples per class shared for the tied covariance
    # Shrinkage of the tied covariance: 0 = the paper's empirical covariance (pseudo-
    # inverse); s in (0, 1]: (1 - s) S + s tr(S)/D I; "ledoit-wolf": s chosen from the data
    # (anchors.MahaMapper). The samples shared do not change, only the receiver's estimate.
    maha_shrinkage: float | Literal["ledoit-wolf"] = 0.0
    # lda: covariance directions shared per class (r = 4 C: 5 C D values per task with the
    # means, under the Mahalanobis anchor's 6 C D and GMMC's 50 D for C <= 10) and the
    # shrinkage of the pooled covariance (docs/results.md, "A better task mapper")
    lda_rank_per_class: int = 4
    lda_shrinkage: float = 0.1
    lr: float = 1e-3  # Adam, as the original code
    patience: int = 10  # epochs without validation improvement before the task stops
    anchor_dtype: Literal["float32", "float16"] = "float32"  # float16 halves anchor bytes
    head_norm: Literal["none", "inf"] = "none"  # inf: rows / their infinity norm (7.2)
    name_init: bool = False  # start similar classes from learned ones (needs head_norm=inf)
    name_threshold: float = 0.8  # cosine similarity of names for name_init
    synonyms: bool = False  # also report accuracy counting near-synonym class names (7.1)
    synonym_threshold: float = 0.9  # names this similar count as the same class
    h2t: bool = False  # BB + Head2Toe (needs bb)
    h2t_fraction: float = 0.01  # share of the biases whose channels the head also reads
    # BB + Head2Toe as section 7.3: the chosen maps average-pooled and flattened to (at most)
    # 8,192 values, the head trained with Adam (lr) for 100 epochs; early stopping on
    # validation accuracy (``patience``) is an option, off as in the paper.
    h2t_features: int = 8192
    h2t_epochs: int = 100
    h2t_early_stopping: bool = False
    # Bias-free backbone passes (features, anchors, evaluation, partial BB's frozen prefix):
    # "auto" = ONNX Runtime on CPU (4-10x eager PyTorch there), PyTorch on CUDA/MPS.
    # Training through biases always runs in PyTorch (lifelong.backbones.engine).
    engine: Literal["auto", "torch", "onnxruntime"] = "auto"

    def validate(self) -> None:
        check(self.image_size >= 16, "image_size must be >= 16")
        check(self.bb_stages >= 1, "bb_stages must be >= 1")
        check(self.gmm_components >= 1 and self.maha_samples >= 1,
              "gmm_components and maha_samples must be >= 1")
        check(self.lr > 0 and self.patience >= 1, "lr must be > 0 and patience >= 1")
        check(self.gmm_reg_covar > 0, "gmm_reg_covar must be > 0")
        check(self.maha_shrinkage == "ledoit-wolf" or 0 <= self.maha_shrinkage <= 1,
              "maha_shrinkage must be in [0, 1] or ledoit-wolf")
        check(self.lda_rank_per_class >= 0 and 0 <= self.lda_shrinkage <= 1,
              "lda_rank_per_class must be >= 0 and lda_shrinkage in [0, 1]")
        check(0 < self.h2t_fraction <= 1, "h2t_fraction must be in (0, 1]")
        check(self.h2t_features >= 1 and self.h2t_epochs >= 1,
              "h2t_features and h2t_epochs must be >= 1")
        check(not self.h2t or self.bb != "none", "h2t needs beneficial biases: set bb")
        check(not self.name_init or self.head_norm == "inf",
              "name_init transfers normalised class weights: set head_norm=inf")


class Head(nn.Module):
    """A linear head; with ``norm="inf"`` each class's weight row is divided by its
    infinity norm in the forward pass, so rows learned in different tasks are comparable and
    can be copied between tasks (section 7.2)."""

    def __init__(self, in_features: int, num_classes: int, norm: str) -> None:
        super().__init__()
        lin = nn.Linear(in_features, num_classes)
        self.weight, self.bias, self.norm = lin.weight, lin.bias, norm

    @staticmethod
    def effective(weight: torch.Tensor, norm: str) -> torch.Tensor:
        if norm == "inf":
            return weight / weight.abs().amax(1, keepdim=True).clamp_min(1e-12)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective(self.weight, self.norm), self.bias)


@LEARNERS.register("lll")
class LLL(Learner[LLLConfig]):
    """Lightweight Lifelong Learner: frozen backbone, per-task head (+ beneficial biases) and
    task anchor; predicts without a task oracle through its task mapper."""

    counts_own_macs = True  # one backbone pass per image, counted in _count (see macs.py)

    Config = LLLConfig
    settings = frozenset({"task-il", "class-il"})
    evaluate_during_task = False  # the task's anchor is fitted when it ends
    # The SKILL code's batch (dataset/dataloader_reader.py: batch_size=32) where the
    # benchmark's default is another paper's (folder: DF-CNN's Office-Home 16).
    batch_sizes = {"folder": 32}

    def __init__(self, cfg: LLLConfig, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        self.backbone: Backbone = BACKBONES.get(cfg.backbone)(image_size=cfg.image_size)
        self.backbone.to(self.device)
        if cfg.bb == "partial" and cfg.bb_stages > self.backbone.num_stages:
            raise ConfigError(f"bb_stages: {cfg.backbone} has {self.backbone.num_stages} stages")
        self.bb_from = 0 if cfg.bb == "full" else max(0, self.backbone.num_stages - cfg.bb_stages)
        # the engine's graphs: all stages (raw features), and with partial BB the frozen
        # prefix whose output the biased top stages start from
        stops = [self.backbone.num_stages] + ([self.bb_from] if cfg.bb == "partial" and
                                              self.bb_from > 0 else [])
        engine = make_engine(self.backbone, cfg.engine, self.device, stops)
        self.extract = FeatureExtractor(self.backbone, self.bb_from, self.device, engine)
        self.extract.on_macs = self._count
        self.seed = ctx.seed
        self.bundles: dict[int, Bundle] = {}  # task id -> bundle (own and received)
        self.bundle_bytes: dict[int, bytes] = {}
        self._mapper: GMMCMapper | MahaMapper | LDAMapper | None = None
        self.current: dict[str, Any] | None = None
        self.train_macs: dict[int, int] = {}
        self.learning: dict[int, dict[str, Any]] = {}  # per own task: best epoch, matches
        self._names: Any = None

    def _count(self, macs: int) -> None:
        if self.current is not None:
            t = self.current["task"]
            self.train_macs[t] = self.train_macs.get(t, 0) + int(macs)

    def _training(self, task_id: int) -> bool:
        return self.current is not None and self.current["task"] == task_id

    # -- features of a task --------------------------------------------------------------------
    def task_features(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        """The input of task ``task_id``'s head: features under its biases (+ Head2Toe maps)."""
        if self._training(task_id):
            cur = self.current
            assert cur is not None
            return self.extract.with_bb(x, cur["bb"], cur["bb_from"])
        b = self.bundles[task_id]
        if b.h2t_index is not None:
            assert b.bb is not None  # Head2Toe selects from the biases
            return self.extract.head2toe(x, b.bb.to(self.device), b.bb_from_stage,
                                         b.h2t_index.to(self.device), b.h2t_pool)
        bb = b.bb.to(self.device) if b.bb is not None else None
        return self.extract.with_bb(x, bb, b.bb_from_stage)

    # -- the learner contract ------------------------------------------------------------------
    def begin_task(self, task: Task) -> None:
        if self._training(task.id):
            assert self.current is not None
            self.current["val"] = task.val  # resumed inside the task
            # The checkpointed MACs already hold this featurisation (done when the task
            # began): computing it again in the new process is not new work of the task.
            count, self.extract.on_macs = self.extract.on_macs, lambda macs: None
            try:
                self._featurise(task)
            finally:
                self.extract.on_macs = count
            return
        head = Head(self.backbone.num_features, task.num_classes, self.cfg.head_norm)
        head.to(self.device)
        matches = self._name_init(head, list(task.classes)) if self.cfg.name_init else {}
        params: list[torch.Tensor] = list(head.parameters())
        bb = None
        if self.cfg.bb != "none":
            bb = torch.zeros(self.backbone.bb_size, device=self.device, requires_grad=True)
            params.append(bb)
        self.current = {"task": task.id, "head": head, "bb": bb, "bb_from": self.bb_from,
                        "optimizer": torch.optim.Adam(params, lr=self.cfg.lr),
                        "best": -1.0, "best_state": None, "best_epoch": 0, "stale": 0,
                        "epochs": 0, "val": task.val, "classes": list(task.classes),
                        "class_ids": list(task.class_ids), "done": False}
        self.learning[task.id] = {"name_matches": matches}
        # after the head's initialisation, as before: the first backbone call measures the
        # MAC units with a random input (global RNG), which must not move the head's draw
        self._featurise(task)

    def _featurise(self, task: Task) -> None:
        """No BB: the features of the task's training and validation images, in one
        backbone pass over both (chunks of ``extract.batch``, cache hits skipped, each
        image counted once), kept for the task: ``train_feats`` (N_tr, D) by row of
        ``task.train``, ``val_feats`` (N_va, D) and ``val_labels`` (N_va,).

        Featurising on demand, batch by batch, ran the backbone on 32 images per step in
        the first epoch and then on the few images ``drop_last`` had left out (2-5 per
        step; a backbone call costs 2-3x more per image at that size), validation in two
        more calls, and hashed every batch's pixels at every step to find its features.
        Now each step indexes ``train_feats`` with the batch's rows (``Batch.index``, which
        the runner fills; without it the pixels are hashed as before) and a validation
        check is one matrix product. The values are the backbone's; an image's features can
        differ in the last float bits from before, as they depend on the size of the batch
        the image was computed in (measured: up to 2e-5 between batches of 1 and 32).
        With BB the features change every step: nothing is precomputed.
        """
        cur = self.current
        assert cur is not None
        cur["train_feats"] = cur["val_feats"] = cur["val_labels"] = None
        if cur["bb"] is not None:
            return
        n = len(task.train)
        # (N_tr + N_va, D), the pixels read a chunk at a time (never the whole split)
        feats = self.extract.raw_splits([s for s in (task.train, task.val) if len(s)])
        cur["train_feats"], cur["val_feats"] = feats[:n], feats[n:]  # (N_tr, D), (N_va, D)
        cur["val_labels"] = task.val.labels.to(self.device)

    def begin_epoch(self, epoch: int) -> None:
        cur = self.current
        if cur is None:
            return
        if cur["epochs"] > 0:
            self._check_validation()
        cur["epochs"] += 1

    @torch.no_grad()
    def _accuracy(self, head: nn.Module, x_feats: torch.Tensor, y: torch.Tensor) -> float:
        return float((head(x_feats).argmax(1) == y).float().mean()) if len(y) else 0.0

    @torch.no_grad()
    def _check_validation(self) -> None:
        """Early stopping on validation accuracy; the best state is kept."""
        cur = self.current
        assert cur is not None
        val = cur["val"]
        correct = 0
        if cur.get("val_feats") is not None:  # no BB: features fixed and kept, (N_va, D)
            logits = cur["head"](cur["val_feats"])  # (N_va, C)
            correct = int((logits.argmax(1) == cur["val_labels"]).sum())
        else:
            step = self.extract.batch
            for start in range(0, len(val), step):
                idx = np.arange(start, min(start + step, len(val)))
                logits = cur["head"](self.task_features(val.images(idx), cur["task"]))
                correct += int((logits.argmax(1) == val.labels[idx].to(self.device)).sum())
        if cur["bb"] is not None:
            # With biases the features change every epoch: the backbone runs again from the
            # first biased stage (below it, partial BB reads the cache, counted once).
            self._count(len(val) * self.extract.unit_macs("top", cur["bb_from"]))
        acc = correct / max(len(val), 1)
        if acc > cur["best"]:
            cur["best"], cur["stale"], cur["best_epoch"] = acc, 0, cur["epochs"]
            cur["best_state"] = {k: v.detach().clone() for k, v in cur["head"].state_dict().items()}
            if cur["bb"] is not None:
                cur["best_state"]["bb"] = cur["bb"].detach().clone()
        else:
            cur["stale"] += 1
            cur["done"] = cur["stale"] >= self.cfg.patience

    def task_done(self) -> bool:
        return self.current is not None and self.current["done"]

    def needs_pixels(self, task: Task) -> bool:
        # no BB: every step looks its features up by row (observe); BB: pixels every step
        cur = self.current
        return not (cur is not None and cur["task"] == task.id
                    and cur.get("train_feats") is not None)

    @property
    def matches_synonyms(self) -> bool:  # SynonymMatcher: the runner's ``synonym`` view
        return self.cfg.synonyms

    def own_train_macs(self) -> dict[int, int]:
        return dict(sorted(self.train_macs.items()))

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        cur = self.current
        assert cur is not None
        if cur["done"]:
            return {"loss": torch.zeros((), device=self.device)}
        table = cur.get("train_feats")  # no BB: (N_tr, D), by row of task.train
        index = batch.index  # rows in task.train, when the caller knows them
        if table is not None and index is not None and batch.task_id == cur["task"] \
                and len(index) == len(batch.y):
            feats = table[index]  # (B, D), no pixels hashed
        else:
            feats = self.task_features(batch.x, batch.task_id)  # (B, D); BB in the graph
        loss = F.cross_entropy(cur["head"](feats), batch.y)
        cur["optimizer"].zero_grad(set_to_none=True)
        loss.backward()
        cur["optimizer"].step()
        step = self.extract.unit_macs("bb_step") if cur["bb"] is not None else 0
        # head: forward, and backward for its weights and its input
        self._count(len(batch.y) * (3 * cur["head"].weight.numel() + step))
        return {"loss": loss.detach()}

    def end_task(self, task: Task) -> None:
        self.keep(task.id, self.seal_task(task))

    def seal_task(self, task: Task) -> bytes:
        """Finish the current task and return its bundle's bytes (the best validation
        epoch's head and biases, Head2Toe's head, the anchor fitted to the task's training
        features): the first half of :meth:`end_task`, which then keeps the bytes. The bank
        is neither read nor changed here, so a SKILL agent runs this outside its bank lock
        and peers' bundles keep arriving while the anchor is fitted."""
        cur = self.current
        assert cur is not None
        self._check_validation()  # score the last epoch too, then keep the best
        if cur["best_state"] is not None:
            state = dict(cur["best_state"])
            bb = state.pop("bb", None)
            cur["head"].load_state_dict(state)
            if bb is not None:
                cur["bb"] = bb
        self.learning[task.id].update(best_epoch=cur["best_epoch"], best_val=cur["best"],
                                      epochs=cur["epochs"])
        index, pool = None, 1
        if self.cfg.h2t:
            index = select_channels(cur["bb"], self.cfg.h2t_fraction,
                                    self.backbone.bb_offset(cur["bb_from"]))
            pool = pool_size(len(index), self.cfg.h2t_features)
            cur["head"] = self._train_h2t(task, cur["bb"].detach(), index, pool)
        if cur.get("train_feats") is not None:  # no BB: the raw features, computed already
            feats = cur["train_feats"].cpu().numpy()  # (N_tr, D)
        else:
            feats = self.extract.raw_splits([task.train]).cpu().numpy()  # anchors: raw
        seed = self.seed * 1000 + task.id
        anchor: GMMCAnchor | MahaAnchor | LDAAnchor
        if self.cfg.mapper == "gmmc":
            fit: dict[str, int] = {}
            anchor = fit_gmmc(feats, self.cfg.gmm_components, seed, self.cfg.gmm_reg_covar,
                              fit)
            # the teacher's work of preparing its anchor (Table 2's "compute GMMC clusters")
            self._count(gmmc_fit_macs(len(feats), feats.shape[1], fit["components"],
                                      fit["em_iterations"], fit["kmeans_iterations"]))
        elif self.cfg.mapper == "lda":
            anchor = fit_lda(feats, task.train.labels.numpy(), task.num_classes,
                             self.cfg.lda_rank_per_class)
        else:
            anchor = fit_maha(feats, task.train.labels.numpy(), task.num_classes,
                              self.cfg.maha_samples, seed)
        # The key is derived (short, printable ASCII: any dataset folder name works); the
        # name itself travels as data, cut to the manifest's longest string.
        bundle = Bundle(key=task_key(task.id, task.name), class_names=list(task.classes),
                        fingerprint=self.backbone.fingerprint(),
                        head_weight=cur["head"].weight.detach().cpu(),
                        head_bias=cur["head"].bias.detach().cpu(),
                        bb=None if cur["bb"] is None else cur["bb"].detach().cpu(),
                        anchor=anchor, bb_from_stage=cur["bb_from"], head_norm=self.cfg.head_norm,
                        h2t_index=None if index is None else index.cpu(), h2t_pool=pool,
                        # partial BB: only the trained slice is shipped
                        bb_offset=0 if cur["bb"] is None else
                        self.backbone.bb_offset(cur["bb_from"]),
                        info={"task_id": task.id, "class_ids": list(task.class_ids),
                              "task_name": task.name[:MAX_NAME],
                              # features differ across engines in the last float bits
                              "engine": self.extract.engine.name})
        self.current = None
        return encode(bundle, self._anchor_dtype())

    def _train_h2t(self, task: Task, bb: torch.Tensor, index: torch.Tensor,
                   pool: int) -> Head:
        """A head on features + the chosen inner maps pooled to ``pool x pool`` and
        flattened (section 7.3): Adam at ``lr`` for ``h2t_epochs`` epochs (100, the paper's)
        in batches of 32 (the SKILL code's), on features computed once (the biases are
        fixed by now); the state of the best validation epoch is kept, and with
        ``h2t_early_stopping`` training stops after ``patience`` epochs without one."""
        step = self.extract.batch

        def feats(split) -> torch.Tensor:  # (N, D + k pool^2)
            with torch.no_grad():
                return torch.cat([self.extract.head2toe(split.images(np.arange(i, min(
                    i + step, len(split)))), bb, self.bb_from, index, pool)
                    for i in range(0, len(split), step)])

        xtr, ytr = feats(task.train), task.train.labels.to(self.device)
        xva, yva = feats(task.val), task.val.labels.to(self.device)
        self._count((len(xtr) + len(xva)) * self.extract.unit_macs("forward", 0))
        head = Head(xtr.shape[1], task.num_classes, self.cfg.head_norm).to(self.device)
        opt = torch.optim.Adam(head.parameters(), lr=self.cfg.lr)
        gen = torch.Generator().manual_seed(self.seed * 1000 + task.id)
        best, best_state, stale, epochs = -1.0, None, 0, 0
        for _ in range(self.cfg.h2t_epochs):
            epochs += 1
            for idx in torch.randperm(len(xtr), generator=gen).split(32):
                loss = F.cross_entropy(head(xtr[idx]), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            acc = self._accuracy(head, xva, yva)
            if acc > best:
                best, stale = acc, 0
                best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            else:
                stale += 1
                if self.cfg.h2t_early_stopping and stale >= self.cfg.patience:
                    break
        # head steps: forward, and the weights' gradient (its input is fixed), per image
        # and epoch; the validation pass: forward
        self._count(epochs * (2 * len(xtr) + len(xva)) * head.weight.numel())
        assert best_state is not None  # the first epoch's accuracy beats -1
        head.load_state_dict(best_state)
        self.learning[task.id].update(h2t_best_val=best, h2t_epochs=epochs,
                                      h2t_features=int(xtr.shape[1]))
        return head

    # -- class names (section 7) -----------------------------------------------------------------
    def _embedder(self):
        if self._names is None:
            from lifelong.learners.lll.names import NameEmbedder

            self._names = NameEmbedder()
        return self._names

    @torch.no_grad()
    def _name_init(self, head: Head, classes: list[str]) -> dict[str, str]:
        """Copy each new class's weights from the most similar learned class (by name),
        when similar enough; returns new class -> matched class."""
        learned = [(t, k, n) for t, b in sorted(self.bundles.items())
                   for k, n in enumerate(b.class_names)]
        if not learned:
            return {}
        emb = self._embedder()
        sim = emb.embed(classes) @ emb.embed([n for _, _, n in learned]).T  # (C_new, C_old)
        matches = {}
        for i, name in enumerate(classes):
            j = int(sim[i].argmax())
            if sim[i, j] >= self.cfg.name_threshold:
                t, k, old = learned[j]
                b = self.bundles[t]
                w = Head.effective(b.head_weight[k:k + 1], b.head_norm)[0]
                if w.numel() == head.weight.shape[1]:  # same feature space (no Head2Toe)
                    # The normalised row (max |w| = 1) at the scale of a fresh row: the head
                    # computes the same function (rows are divided by their infinity norm),
                    # but Adam's steps, about lr in absolute size, change it as fast as a
                    # fresh row (~1/sqrt(D) in size); a row copied at max 1 learned ~35x slower
                    # (measured: epochs to best validation accuracy 4.8 -> 21.8 on shipped-mix).
                    scale = head.weight[i].abs().max()
                    head.weight[i] = w.to(self.device) * scale
                    head.bias[i] = b.head_bias[k].to(self.device)
                    matches[name] = old
        return matches

    def synonym_match(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Whether each predicted global class is the target or a near-synonym of it (class
        names with cosine similarity >= ``synonym_threshold``, section 7.1)."""
        names: dict[int, str] = {}
        for b in self.bundles.values():
            names.update(zip(b.info.get("class_ids", []), b.class_names, strict=True))
        same = pred == target
        ids = sorted({int(i) for i in torch.cat([pred, target]).tolist() if int(i) in names})
        if not ids:
            return same
        emb = self._embedder().embed([names[i] for i in ids])
        pos = {i: k for k, i in enumerate(ids)}
        sim = emb @ emb.T
        close = torch.tensor([p in pos and t in pos and sim[pos[p], pos[t]] >=
                              self.cfg.synonym_threshold
                              for p, t in zip(pred.tolist(), target.tolist(), strict=True)],
                             device=pred.device)
        return same | close

    # -- bundles -----------------------------------------------------------------------------------
    def _anchor_dtype(self) -> torch.dtype:
        return torch.float16 if self.cfg.anchor_dtype == "float16" else torch.float32

    def expect(self) -> Expect:
        """What this learner's bundles must match: its backbone and task mapper, and the
        mixture sizes and variance floor its own settings produce (a population shares
        them). ``0.99 x gmm_reg_covar``: every fitted variance is at least ``reg_covar``;
        the margin covers float16 anchors' rounding."""
        return Expect(fingerprint=self.backbone.fingerprint(),
                      feature_dim=self.backbone.num_features, bb_size=self.backbone.bb_size,
                      num_stages=self.backbone.num_stages, anchor=self.cfg.mapper,
                      stage_offsets=tuple(self.backbone.bb_offset(s)
                                          for s in range(self.backbone.num_stages)),
                      max_components=self.cfg.gmm_components,
                      max_samples_per_class=self.cfg.maha_samples,
                      max_rank_per_class=self.cfg.lda_rank_per_class,
                      min_variance=0.99 * self.cfg.gmm_reg_covar)

    def _decode(self, data: bytes) -> Bundle:
        return decode(data, self.expect())

    def keep(self, task_id: int, data: bytes) -> None:
        """Add an own task's bundle (:meth:`seal_task`'s bytes) to the bank. A bundle held
        for that task already is replaced: an agent re-learns a task only when the agent
        first given it died (dynamic assignment), and a task's training is seeded by task,
        so the bytes are the same; if they were not, the agents' bundle hashes would differ
        and the population reports it (``agree``)."""
        self._add(task_id, data)

    def _add(self, task_id: int, data: bytes) -> None:
        # What is kept is exactly what is shared (e.g. float16 anchors): decode the bytes.
        data = bytes(data)  # bytes(bytes) is the same object, not a copy
        self._hold(task_id, data, self._decode(data))

    def _hold(self, task_id: int, data: bytes, bundle: Bundle) -> None:
        # ``bundle`` was decoded from this very ``data`` object: its tensors are views of
        # it, so the bank holds each bundle once.
        self.bundles[task_id] = bundle
        self.bundle_bytes[task_id] = data
        self._mapper = None

    def export_bundle(self, task_id: int) -> bytes:
        """The bytes to share for task ``task_id``."""
        return self.bundle_bytes[task_id]

    def check_bundle(self, data: bytes, admission: Admission | None = None) -> int:
        """The task id of a bundle this learner would accept; BundleError (one line) if the
        bytes are malformed, altered, too large, out of range, from another backbone or
        mapper, or (with ``admission``) not a task of the receiver's stream it may take.
        A task already held with other bytes is refused (nothing is overwritten); the same
        bytes again are accepted (a no-op in :meth:`import_bundle`). Changes nothing."""
        return self._admit(bytes(data), admission)[0]

    def _admit(self, data: bytes, admission: Admission | None) -> tuple[int, Bundle]:
        """:meth:`check_bundle`, also returning the decoded bundle (views of ``data``)."""
        b = self._decode(data)
        if admission is not None:
            task_id = admission.check(b)
        else:  # no stream to check against (e.g. a fresh learner): ids in range at least
            raw_id = b.info.get("task_id")
            ids = b.info.get("class_ids")
            if type(raw_id) is not int or raw_id < 0 or not isinstance(ids, list) or \
                    len(ids) != b.num_classes or not all(
                        type(i) is int and 0 <= i < self.ctx.num_global_classes for i in ids):
                raise BundleError("bundle refused: missing or invalid task and class ids")
            task_id = raw_id
        held = self.bundle_bytes.get(task_id)
        if held is not None and held != data:
            raise BundleError(f"bundle refused: task {task_id} is already held with other "
                              "bytes (nothing is overwritten)")
        return task_id, b

    def import_bundle(self, data: bytes, admission: Admission | None = None) -> int:
        """Check (:meth:`check_bundle`) and add a bundle learned elsewhere; returns its task
        id. The learner is unchanged when the bundle is refused or already held."""
        data = bytes(data)  # one object, checked, decoded once and held
        task_id, bundle = self._admit(data, admission)
        if task_id in self.bundle_bytes:
            return task_id  # the same bytes again
        self._hold(task_id, data, bundle)
        return task_id

    def bundle_digests(self) -> dict[int, str]:
        return {t: digest(d) for t, d in sorted(self.bundle_bytes.items())}

    # -- prediction ------------------------------------------------------------------------------
    def mapper(self) -> GMMCMapper | MahaMapper | LDAMapper:
        if self._mapper is None:
            anchors = {t: b.anchor for t, b in self.bundles.items()}  # each mapper sorts
            self._mapper = (
                GMMCMapper(cast(dict[int, GMMCAnchor], anchors)) if self.cfg.mapper == "gmmc"
                else LDAMapper(cast(dict[int, LDAAnchor], anchors), self.cfg.lda_shrinkage)
                if self.cfg.mapper == "lda"
                else MahaMapper(cast(dict[int, MahaAnchor], anchors), self.cfg.maha_shrinkage))
        return self._mapper

    @torch.no_grad()
    def map_task(self, x: torch.Tensor) -> torch.Tensor:
        """The task mapper's task for each input: (B, ...) -> (B,)."""
        return self.mapper().map(self.extract.raw(x).cpu().double()).to(x.device)

    def _head_logits(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        feats = self.task_features(x, task_id)
        if self._training(task_id):
            assert self.current is not None
            return self.current["head"](feats)
        b = self.bundles[task_id]
        w = Head.effective(b.head_weight, b.head_norm)
        return F.linear(feats, w.to(feats.device), b.head_bias.to(feats.device))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if task_id is not None:
            return self._head_logits(x, task_id)
        # No oracle: mapper -> task -> that task's head and BB; scores over all classes of
        # the stream, -inf outside the chosen task's classes.
        tasks = self.map_task(x)
        out = torch.full((len(x), self.ctx.num_global_classes), float("-inf"), device=x.device)
        for t in tasks.unique().tolist():
            rows = (tasks == t).nonzero().flatten()
            ids = torch.tensor(self.bundles[t].info["class_ids"], device=x.device)
            out[rows.unsqueeze(1), ids] = self._head_logits(x[rows], t)
        return out

    def mapper_macs_per_image(self) -> int:
        """MACs of the task mapper for one image over every task held (lll.cost)."""
        d, anchors = self.backbone.num_features, [b.anchor for b in self.bundles.values()]
        if self.cfg.mapper == "gmmc":
            return gmmc_map_macs(sum(len(cast(GMMCAnchor, a).weights) for a in anchors), d)
        if self.cfg.mapper == "maha":
            return maha_map_macs(sum(len(cast(MahaAnchor, a).means) for a in anchors), d)
        count = getattr(self.mapper(), "macs_per_image", None)  # a mapper that counts its own
        return int(count()) if callable(count) else 0

    def parameter_count(self) -> int:
        """Learned parameters: heads and the beneficial biases trained (the backbone is
        fixed; partial BB's zeros below its first biased stage are not learned)."""
        return sum(b.head_weight.numel() + b.head_bias.numel() +
                   (b.bb.numel() - b.bb_offset if b.bb is not None else 0)
                   for b in self.bundles.values())

    # -- checkpoints and report ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        cur = self.current
        state: dict[str, Any] = {
            "bundles": [[t, torch.frombuffer(bytearray(d), dtype=torch.uint8)]
                        for t, d in self.bundle_bytes.items()],
            "train_macs": [[t, m] for t, m in self.train_macs.items()],
            "learning": [[t, v] for t, v in self.learning.items()],
            "current": None}
        if cur is not None:
            state["current"] = {k: cur[k] for k in ("task", "bb", "best", "best_state",
                                                    "best_epoch", "stale", "epochs", "classes",
                                                    "class_ids", "done")}
            state["current"].update(head=cur["head"].state_dict(),
                                    optimizer=cur["optimizer"].state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t, blob in state["bundles"]:
            self._add(int(t), blob.numpy().tobytes())
        self.train_macs = {int(t): int(m) for t, m in state["train_macs"]}
        self.learning = {int(t): v for t, v in state["learning"]}
        c = state["current"]
        self.current = None
        if c is not None:
            head = Head(self.backbone.num_features, len(c["classes"]), self.cfg.head_norm)
            head.to(self.device).load_state_dict(c["head"])
            params, bb = list(head.parameters()), c["bb"]
            if bb is not None:
                bb = bb.to(self.device).requires_grad_(True)
                params.append(bb)
            opt = torch.optim.Adam(params, lr=self.cfg.lr)
            opt.load_state_dict(c["optimizer"])
            self.current = dict(c, task=int(c["task"]), head=head, bb=bb, optimizer=opt,
                                bb_from=self.bb_from, val=None)

    def report(self) -> dict[str, Any]:
        """Bundle sizes and hashes, MACs of training each own task and of inference, per
        task the epoch of the best validation accuracy (and name matches), and with the
        Mahalanobis mapper the covariance shrinkage it used over all tasks held."""
        fwd = self.extract.unit_macs("forward", 0)
        return {"bundle_bytes": {str(t): len(d) for t, d in sorted(self.bundle_bytes.items())},
                "bundle_sha256": {str(t): h for t, h in self.bundle_digests().items()},
                "backbone_fingerprint": self.backbone.fingerprint(),
                # no BB: one backbone pass serves the mapper and the head; BB: a second pass;
                # plus the task mapper over every task held
                "inference_macs_per_image": fwd * (1 if self.cfg.bb == "none" else 2)
                + self.mapper_macs_per_image(),
                "mapper_macs_per_image": self.mapper_macs_per_image(),
                "learning": {str(t): v for t, v in sorted(self.learning.items())},
                "bb": self.cfg.bb, "mapper": self.cfg.mapper,
                "engine": self.extract.engine.name,  # as resolved (auto, fallback)
                **({"maha_shrinkage": cast(MahaMapper, self.mapper()).shrinkage_
                    if self.bundles else None}
                   if self.cfg.mapper == "maha" else {})}
