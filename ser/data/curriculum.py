"""A curriculum: several corpora trained one after the other inside one ``fit``.

``CurriculumDataModule`` holds the stages (e.g. IEMOCAP for 5 epochs, then ShEMO for 20) and
serves each epoch the loaders of the stage that trains it: one training loader over every
stage's items, whose ``StagedBatchSampler`` deals only the epoch's stage, and the epoch's stage's
validation loader. The ``ser.training.callbacks.Curriculum`` callback moves the model from stage
to stage (classes, optimizer, schedule); the data layer only knows which epoch is which stage.

Classes: the model is built for the *final* stage's classes (``class_names``, linked into
``model.class_names``) and every stage indexes its labels by that vocabulary, so one head carries
over from stage to stage by emotion name. An earlier stage may use fewer classes (IEMOCAP's 4 of
ShEMO's 6); the model then trains on that stage's classes only, and the rows of the others keep
their initialisation until a stage uses them. An earlier-stage class that the final stage does
not have is an error: the final test could never score it, so drop or merge it in that stage's
``classes`` / ``merge`` (e.g. ``merge: {frustration: anger}``) on purpose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
from torch.utils.data import ConcatDataset, DataLoader

from ser.data.datamodule import SERDataModule
from ser.data.loader import LoaderSettings
from ser.data.sampler import StagedBatchSampler, stage_of

log = logging.getLogger(__name__)


class CurriculumDataModule(L.LightningDataModule):
    """Stages of corpora, one after the other; each epoch's loaders are those of its stage.

    In a curriculum fit, epoch ``e`` trains and validates on stage ``stage_at(e)``: the training
    loader is built once (one worker pool for all stages) and its ``StagedBatchSampler`` follows
    the epoch; Lightning asks for the loaders again every epoch (the Curriculum callback sets
    ``reload_dataloaders_every_n_epochs=1``) and so reads the stage's batch count. Outside a
    curriculum fit (validate, test) the stage is the final one: the test is on the final stage's
    test split (ShEMO in the paper's experiment). Each stage's split is written to
    ``<run>/splits/<name>/{train,val,test}.csv``.

    Stages are named (``iemocap``, ``shemo``), so a command line can reach into one:
    ``--data.init_args.stages.shemo.init_args.root /data/ShEMO``. Each is given as a factory
    (in YAML a ``class_path``/``init_args`` like any datamodule; in Python e.g.
    ``functools.partial(ShEMODataModule, root=...)``).

    Args:
        stages: stage name -> a factory of its datamodule, in training order; the last one is
            the target.
        epochs: stage name -> its training epochs; ``trainer.max_epochs`` must be their sum.
        loader: the loader settings of every stage (one crop length, linked to the backbone's
            segment length; one cache, batch size and seed); a stage gives none of its own.
    """

    def __init__(
        self,
        stages: Mapping[str, Callable[[], SERDataModule]],
        epochs: Mapping[str, int],
        loader: LoaderSettings = LoaderSettings(),
    ) -> None:
        super().__init__()
        self.names = list(stages)
        if not self.names or set(epochs) != set(self.names):
            raise ValueError(
                f"a curriculum needs one epoch count per stage: stages {self.names}, "
                f"epochs {dict(epochs)}"
            )
        self.stages = [stages[name]() for name in self.names]
        self.epochs = [int(epochs[name]) for name in self.names]
        if any(n < 1 for n in self.epochs):
            raise ValueError(f"every stage needs at least one epoch, got epochs {dict(epochs)}")
        self.loader = loader
        final, final_dimensions = self.class_names, self.dimensions
        for name, stage in zip(self.names, self.stages, strict=True):
            extra = [c for c in stage.class_names if c not in final]
            if extra:
                raise ValueError(
                    f"curriculum stage {name!r} has classes {extra} that the final stage "
                    f"({self.names[-1]!r}: {final}) does not; leave them out of that stage's "
                    "classes or merge them into a final-stage class (its `merge` argument)"
                )
            if stage.loader not in (LoaderSettings(), loader):
                raise ValueError(
                    f"curriculum stage {name!r} has loader settings of its own "
                    f"({stage.loader}); give them once, for every stage, as the curriculum's "
                    "`loader` (data.init_args.loader)"
                )
            if final_dimensions and stage.dimensions != final_dimensions:
                raise ValueError(
                    f"curriculum stage {name!r} has dimensions {stage.dimensions}, the final "
                    f"stage ({self.names[-1]!r}) {final_dimensions}: the model's outputs are the "
                    "final stage's, so every stage gives the same dimensions in the same order"
                )
            stage.loader = loader
            stage.label_space = final
            stage.splits_dir = f"splits/{name}"
        self.stage: int | None = None  # None: not in a curriculum fit, i.e. the final stage
        self._train_loader: DataLoader | None = None
        self._val_loaders: dict[int, DataLoader] = {}

    # --- the plan ----------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """The final stage's classes: the model's output vocabulary for every stage."""
        return self.stages[-1].class_names

    @property
    def dimensions(self) -> list[str]:
        """The final stage's dimensions (the model's regression outputs)."""
        return self.stages[-1].dimensions

    def heard(self) -> list[dict[str, Any]]:
        """What a model fitted on the curriculum learns from: every stage's train and val."""
        return [entry for stage in self.stages for entry in stage.heard()]

    @property
    def tested(self) -> SERDataModule:
        """The datamodule whose test part a test scores: the final stage."""
        return self.stages[-1]

    @property
    def current(self) -> SERDataModule:
        return self.stages[len(self.stages) - 1 if self.stage is None else self.stage]

    def stage_class_names(self, index: int) -> list[str]:
        return self.stages[index].class_names

    def stage_at(self, epoch: int) -> int:
        """The stage that trains epoch ``epoch`` (0-based); the last one after the plan ends."""
        return stage_of(epoch, self.epochs)

    def set_stage(self, index: int) -> None:
        """The model trains stage ``index`` now (called by the Curriculum callback); its class
        counts are served from now on, its loaders from the epochs of the stage."""
        if not 0 <= index < len(self.stages):
            raise ValueError(f"stage {index} does not exist; stages: {self.names}")
        self.stage = index

    def num_train_batches(self, index: int) -> int:
        """Training batches per epoch of stage ``index`` on this rank (after ``setup``)."""
        return len(self._train().batch_sampler.samplers[index])

    def class_counts(self, part: str) -> list[int]:
        """Utterances per final-stage class in the current stage's ``part`` (0 for the classes
        the stage does not use), for class-balanced loss weights."""
        stage = self.current
        counts = dict(zip(stage.class_names, stage.class_counts(part), strict=True))
        return [counts.get(name, 0) for name in self.class_names]

    # --- LightningDataModule -------------------------------------------------------------------
    def prepare_data(self) -> None:
        for stage in self.stages:
            stage.prepare_data()

    def setup(self, stage: str) -> None:
        for name, datamodule in zip(self.names, self.stages, strict=True):
            datamodule.trainer = self.trainer  # DDP rank and world size, the run directory
            datamodule.setup(stage)
            log.info("curriculum stage %r: classes %s", name, datamodule.class_names)

    def train_dataloader(self) -> DataLoader:
        if self.stage is None:
            raise RuntimeError(
                "CurriculumDataModule trains only under the ser.training.callbacks.Curriculum "
                "callback, "
                "which moves it from stage to stage; add it to trainer.callbacks "
                "(see configs/experiments/iemocap_to_shemo_wav2vec2.yaml)"
            )
        loader = self._train()
        # Lightning reads the loader's length (the stage's batch count) before it calls
        # set_epoch, and on a resume starts iterating before it: the epoch is set here first.
        loader.batch_sampler.set_epoch(self.trainer.current_epoch)
        return loader

    def _train(self) -> DataLoader:
        """The one training loader of all stages (built at first use, after ``setup``)."""
        if self._train_loader is None:
            datasets = [stage.make_dataset("train", train=True) for stage in self.stages]
            samplers = [
                stage.make_batch_sampler(dataset, train=True)
                for stage, dataset in zip(self.stages, datasets, strict=True)
            ]
            sampler = StagedBatchSampler(samplers, self.epochs)
            # Every stage has the curriculum's loader settings: any stage's make_loader does.
            self._train_loader = self.stages[-1].make_loader(
                ConcatDataset(datasets), sampler, train=True
            )
        return self._train_loader

    def val_dataloader(self) -> DataLoader:
        # During the curriculum the epoch's stage: right from the first epoch of a resumed run,
        # whichever stage its checkpoint was saved in. Built once per stage.
        index = (
            len(self.stages) - 1
            if self.stage is None
            else self.stage_at(self.trainer.current_epoch)
        )
        if index not in self._val_loaders:
            self._val_loaders = {index: self.stages[index].val_dataloader()}  # drop the last one's
        return self._val_loaders[index]

    def test_dataloader(self) -> DataLoader:
        return self.stages[-1].test_dataloader()
