"""``python -m ser fit|validate|test``: the LightningCLI (``ser.commands.table`` lists the rest)."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from ser.commands.parsing import ShortErrors
from ser.commands.runs import (
    config_file_name,
    place_logger,
    removable_if_unused,
    remove_if_unused,
)
from ser.models.checkpoint import RESUME_KEY, check_finite_weights, load_checkpoint
from ser.models.network import MACHINE_ARGUMENTS, checked_parts, encoder_arguments
from ser.training.module import PARTS, SERModule

log = logging.getLogger(__name__)


class SubcommandParser(ShortErrors, LightningArgumentParser):
    """A LightningCLI parser that knows the subcommand it parses (and says a parse error in one
    line, ``ShortErrors``).

    LightningCLI builds one parser per subcommand, each from ``parser_kwargs[subcommand]``;
    ``build_cli`` gives each its name there, so ``SERCLI.add_arguments_to_parser`` can add
    fit-only options and find the validate/test parsers through public arguments alone.

    Args:
        for_subcommand: the subcommand parsed; None for the main parser (or ``run=False``'s one
            parser, which parses like fit).
    """

    def __init__(self, *args: Any, for_subcommand: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.for_subcommand = for_subcommand


class SERCLI(LightningCLI):
    """LightningCLI with the links that keep sizes written once.

    - fit/validate/test: the class names (and so the head size) and the segment length come
      from the datamodule.
    - fit: ``--test_after_fit true`` tests the best (or ``--test_checkpoint last``) checkpoint
      into the same run directory.
    - validate/test need ``--ckpt_path``; the model defaults to the checkpoint's configuration
      (as it does for a fit that resumes one), and a fit's saved ``config.yaml`` is accepted as
      it is (fit's own options ignored).

    ``predict`` is not a Lightning subcommand: ``ser.commands.predict`` runs ``EmotionRecognizer``.
    A run that fails before writing into the run directory it claimed removes that directory.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # LightningCLI's arguments
        self.removable_run_dir: Path | None = None  # set by before_instantiate_classes
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            remove_if_unused(self.removable_run_dir)
            raise

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        self.subcommand_parsers: dict[str, SubcommandParser] = {}  # by add_arguments_to_parser
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # With --ckpt_path the checkpoint's model config is the default (Lightning only merges
        # it after a full parse): validate/test need no model config, and a resumed fit keeps
        # what its config leaves out as the checkpoint has it (an argument added since, whose
        # new default would change the model mid-run; ADDED_ARGUMENTS).
        words = list(sys.argv[1:] if args is None else args)
        if words[:1] and words[0] in self.subcommands():  # it checks the subcommand's config too
            parser.prog = f"{parser.prog} {words[0]}"
        ckpt_path = _option_value(words, "--ckpt_path")
        if words[:1] and words[0] in ("fit", "validate", "test") and ckpt_path:
            defaults = model_config_of_checkpoint(ckpt_path)
            if words[0] == "fit":
                check_resumable(ckpt_path)
            else:  # scored where it may not have trained (its config may say)
                defaults["model.backbone"]["init_args"].update(MACHINE_ARGUMENTS)
            self.subcommand_parsers[words[0]].set_defaults(defaults)
        super().parse_arguments(parser, args)
        if words[:1] == ["fit"] and ckpt_path and rank_zero_only.rank == 0:
            # Lightning then sets the model config to the checkpoint's: say what that drops.
            unused = settings_differing(self.config["fit"], defaults)
            if unused:
                log.warning(
                    "--ckpt_path %s: a resumed fit continues the model as the checkpoint has it; "
                    "settings given here not used: %s; start a new fit to change them",
                    ckpt_path, ", ".join(unused),
                )  # fmt: skip

    def add_arguments_to_parser(self, parser: SubcommandParser) -> None:
        # Our batch sampler deals batches to DDP ranks itself (length grouping needs it).
        parser.set_defaults({"trainer.use_distributed_sampler": False})
        # Checkpoints written beside themselves and renamed: a full disk keeps the last good one.
        parser.set_defaults(
            {"trainer.plugins": {"class_path": "ser.training.checkpoint_io.DurableCheckpointIO"}}
        )
        subcommand = parser.for_subcommand or "fit"  # run=False parses like fit
        self.subcommand_parsers[subcommand] = parser  # see parse_arguments
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.dimensions", "model.dimensions", apply_on="instantiate")
        parser.link_arguments(
            "data.init_args.loader.max_seconds", "model.backbone.init_args.segment_seconds"
        )
        if parser.for_subcommand is None:
            # Lightning adds Trainer.fit's own arguments (ckpt_path, weights_only) to the fit
            # subcommand only; added here too, a fit's saved config.yaml parses without one
            # (`ser cv -c RUN/config.yaml`). build_cli(run=False) runs nothing with them; cv
            # refuses a ckpt_path.
            parser.add_method_arguments(Trainer, "fit", skip=set(self.subcommands()["fit"]))
        # fit's own options; validate and test accept and ignore them, so the config.yaml a fit
        # saved in its run directory is reused as it is (`ser test -c RUN/config.yaml
        # --ckpt_path RUN/checkpoints/last.ckpt`).
        ignored = "" if subcommand == "fit" else f"fit's option, ignored by {subcommand}: "
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help=f"{ignored}test a checkpoint of this run when fit ends (--test_checkpoint)",
        )
        parser.add_argument(
            "--test_checkpoint",
            type=Literal["best", "last"],
            default="best",
            help=f"{ignored}best: the best val score's checkpoint; last: the last epoch's",
        )

    def before_instantiate_classes(self) -> None:
        # Each run claims its own directory before the logger exists (see ser.commands.runs); a run
        # without one (--trainer.logger false) saves no config into the working directory.
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if config.get("data") is None:  # the model's classes come from the data
            raise ValueError(
                f"ser {self.subcommand or 'fit'} needs a corpus: a data config, e.g. -c "
                "configs/data/shemo.yaml --data.root /path/to/ShEMO (configs/data/ has one per "
                "corpus, and manifest.yaml for any other)"
            )
        if self.subcommand in (None, "fit"):
            check_monitored_metrics(config)
        if self.subcommand in ("validate", "test") and not config.get("ckpt_path"):
            # Lightning would score the model as the config builds it: an untrained head.
            raise ValueError(
                f"ser {self.subcommand} needs --ckpt_path, the trained model's checkpoint (e.g. "
                "RUN/checkpoints/best.ckpt): a model built from the config alone has an "
                "untrained head"
            )
        if self.subcommand in ("validate", "test"):
            # The model whose weights the checkpoint then loads: its encoder rebuilt from the
            # config saved with it, so the source a config names need not be here.
            checkpoint = load_checkpoint(config.ckpt_path, "--ckpt_path")
            where = f"--ckpt_path {config.ckpt_path}"
            for key, value in (encoder_arguments(checkpoint, where) or {}).items():
                config.model.backbone.init_args[key] = value
        if config.trainer.get("barebones"):  # Lightning's own refusal is a traceback
            raise ValueError(
                "--trainer.barebones true: Lightning's raw-speed mode allows no logger, "
                "checkpoints, progress bar or model summary, which ser's trainer configs set; "
                "time training with benchmarks/train_throughput.py instead"
            )
        drop_unusable_callbacks(config.trainer)
        if (
            self.subcommand in (None, "fit")
            and config.test_after_fit
            and config.test_checkpoint == "best"
            and config.trainer.get("enable_checkpointing") is False
        ):
            raise ValueError(
                "--trainer.enable_checkpointing false keeps no best checkpoint for "
                "--test_after_fit true to test: add --test_checkpoint last (the final weights)"
            )
        # fast_dev_run (a smoke test of every loop) writes no logs or checkpoints: no directory.
        fast_dev_run = config.trainer.get("fast_dev_run")
        run_dir = (
            None if fast_dev_run else place_logger(config, self.subcommand, config.get("ckpt_path"))
        )
        self.removable_run_dir = removable_if_unused(run_dir)
        if run_dir is None:
            self.save_config_callback = None
        else:
            self.save_config_kwargs["config_filename"] = config_file_name(run_dir)

    def instantiate_classes(self) -> None:
        # jsonargparse builds `data` as one type of Optional[LightningDataModule] and reports an
        # error raised while building it ("missing column" in a manifest) as 80-100 lines of
        # "Does not validate against any of the Union subtypes"; raise the error itself.
        try:
            super().instantiate_classes()
        except ValueError as err:
            inner = error_beneath_jsonargparse(err)
            if inner is err:
                raise
            raise inner from None
        # SERModule keeps plain values as hyper-parameters; its parts' configs (class_path /
        # init_args, not the built modules) are added here, so a checkpoint alone rebuilds the
        # model and loads with weights_only.
        config = self.config[self.subcommand] if self.subcommand else self.config
        parts = {part: config.model[part] for part in PARTS}
        self.model.save_hyperparameters(
            {k: v.as_dict() if isinstance(v, Namespace) else v for k, v in parts.items()}
        )

    def after_fit(self) -> None:
        log_checkpoints(self.trainer)
        if self.config.fit.test_after_fit:
            if self.trainer.fast_dev_run or not self.trainer.checkpoint_callbacks:
                path = None  # no checkpoint saved (a smoke test, or checkpointing off)
                log.info("no checkpoint saved: testing the final weights in memory")
            else:
                path = checkpoint_to_test(self.trainer, self.config.fit.test_checkpoint)
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=path)


def checkpoint_to_test(trainer: Trainer, which: str) -> str:
    """The file of ``--test_checkpoint best|last``; one clear error when fit saved none.

    "last" is the checkpoint callback without a monitor (``last.ckpt``, written every epoch):
    on a validation split too small to select on (one speaker of a leave-one-speaker-out fold),
    the last epoch of a schedule that decays to 0 is the better choice.
    """
    callbacks = [
        c for c in trainer.checkpoint_callbacks if (c.monitor is None) == (which == "last")
    ]
    paths = [c.best_model_path for c in callbacks if c.best_model_path]
    if not paths:  # Lightning's own error is a traceback
        why = (
            "no epoch ended (--trainer.max_epochs 0, or a --trainer.max_steps inside the first)"
            if which == "last"
            else "no validation score chose one (no validation ran: --trainer.limit_val_batches "
            "0, or training stopped before its first: --trainer.max_epochs 0, a "
            "--trainer.max_steps inside the first epoch)"
        )
        if not callbacks:
            monitor = "without" if which == "last" else "with"
            why = f"the trainer config has no ModelCheckpoint {monitor} a monitor"
        raise ValueError(f"--test_after_fit true: fit saved no {which} checkpoint to test: {why}")
    return paths[0]


# Callbacks of the trainer configs that Lightning refuses without what they write to, and the
# trainer setting that takes it away: they are left out of such a run.
NEEDS = {"LearningRateMonitor": "logger", "ModelCheckpoint": "enable_checkpointing"}


def drop_unusable_callbacks(trainer: Namespace) -> None:
    """Leave out of ``trainer.callbacks`` (a parsed trainer config, changed in place) the
    learning-rate monitor under ``--trainer.logger false`` and the checkpoints under
    ``--trainer.enable_checkpointing false``, which Lightning would refuse at the start of
    training, saying so once."""
    kept, left_out = [], Counter()
    for callback in trainer.get("callbacks") or []:
        name = str(getattr(callback, "class_path", type(callback).__name__)).rpartition(".")[2]
        if name in NEEDS and trainer.get(NEEDS[name]) is False:
            left_out[name] += 1
        else:
            kept.append(callback)
    for name, count in left_out.items():
        log.info("--trainer.%s false: the config's %s (%d) left out", NEEDS[name], name, count)
    trainer.callbacks = kept


def error_beneath_jsonargparse(err: BaseException) -> BaseException:
    """The exception jsonargparse wrapped (through each of its layers), else ``err`` itself."""
    while err.__cause__ is not None and _raised_in_jsonargparse(err):
        err = err.__cause__
    return err


def _raised_in_jsonargparse(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and f"{os.sep}jsonargparse{os.sep}" in frames[-1].filename


def _option_value(words: list[str], option: str) -> str | None:
    """The value of ``--option VALUE`` or ``--option=VALUE`` in ``words``, if given."""
    for i, word in enumerate(words):
        if word == option and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def model_config_of_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """``{"model.<arg>": value}`` from a checkpoint saved by a CLI run; a clear error otherwise.

    Only ``SERModule``'s own arguments are taken, and its parts only when they name classes a
    checkpoint's parts may be (``ser.models.network.checked_parts``); NaN weights are refused
    here, with their names, before Lightning loads them.
    """
    checkpoint = load_checkpoint(ckpt_path, "--ckpt_path")
    check_finite_weights(checkpoint.get("state_dict") or {}, f"--ckpt_path {ckpt_path}")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    if "backbone" not in hparams or "class_names" not in hparams:
        raise ValueError(
            f"--ckpt_path {ckpt_path}: no SERModule configuration in the checkpoint (expected "
            "hyper_parameters with backbone and class_names, as saved by `python -m ser fit`)"
        )
    arguments = set(inspect.signature(SERModule).parameters)
    config = {key: value for key, value in hparams.items() if key in arguments}
    config.update(checked_parts(hparams, f"--ckpt_path {ckpt_path}"))
    return {f"model.{key}": value for key, value in config.items()}


# What a task never logs, by the prefix of the names of what it does not log.
NOT_LOGGED = {
    "dimensional": ("val/UA", "val/WA", "val/F1", "val/recall", "val/ECE", "val/NLL"),
    "categorical": ("val/CCC", "val/pearson", "val/MAE"),
}


def check_monitored_metrics(config: Any) -> None:
    """Refuse a trainer callback (a checkpoint's or early stopping's ``monitor``) that watches a
    metric the model's task never logs: Lightning says so only after the first validation (in
    ``ser cv``, of every fold), and before the run directory is claimed."""
    task = config.model.get("task", "categorical")
    for callback in config.trainer.get("callbacks") or []:
        init_args = callback.get("init_args") if isinstance(callback, Namespace) else None
        monitor = init_args.get("monitor") if init_args else None
        if isinstance(monitor, str) and monitor.startswith(NOT_LOGGED.get(task, ())):
            way = (
                "compose configs/trainer/select_on_ccc.yaml after the trainer config (it "
                "selects on val/CCC)"
                if task == "dimensional"
                else "select on val/UA (leave configs/trainer/select_on_ccc.yaml out)"
            )
            raise ValueError(
                f"trainer callback {callback.class_path.rsplit('.', 1)[-1]} monitors {monitor}, "
                f"which a --model.task {task} model does not log: {way}"
            )


# Model settings a fit's datamodule gives (linked), not the user.
LINKED_SETTINGS = (
    "model.class_names",
    "model.dimensions",
    "model.backbone.init_args.segment_seconds",
)


def settings_differing(config: Any, checkpoint: dict[str, Any]) -> list[str]:
    """``"key value (checkpoint: value)"`` for each setting of the parsed ``config`` (the
    configs and the command line) that differs from the checkpoint's model config
    (``model_config_of_checkpoint``); settings the checkpoint lacks or the config leaves unset
    are not compared."""

    def leaves(value: Any, key: str) -> dict[str, Any]:
        if isinstance(value, Namespace):
            value = value.as_dict()
        if isinstance(value, dict):
            return {
                k: v
                for name, item in value.items()
                for k, v in leaves(item, f"{key}.{name}").items()
            }
        return {key: list(value) if isinstance(value, tuple) else value}

    given = {k: v for key in checkpoint for k, v in leaves(config.get(key), key).items()}
    saved = {k: v for key, value in checkpoint.items() for k, v in leaves(value, key).items()}
    return [
        f"{key} {given[key]} (checkpoint: {saved[key]})"
        for key in sorted(given.keys() & saved.keys())
        if given[key] is not None
        and given[key] != saved[key]
        and not key.startswith(LINKED_SETTINGS)
    ]


def check_resumable(ckpt_path: str) -> None:
    """A fit resumes from the optimizer and schedule states of ``last.ckpt``; a file of the model
    alone (``best.ckpt``, saved with ``save_weights_only``; ``ser export --output X.ckpt``) is
    refused in one line that names the ways on."""
    if RESUME_KEY not in load_checkpoint(ckpt_path, "--ckpt_path"):
        raise ValueError(
            f"--ckpt_path {ckpt_path}: holds the model alone (as best.ckpt and `ser export` "
            "save it), not the optimizer and schedule state a fit resumes from; resume from the "
            f"run's checkpoints/last.ckpt, or start a new fit from these weights with "
            f"--model.init_from {ckpt_path}"
        )


def log_checkpoints(trainer: Trainer) -> None:
    """Say where fit left its checkpoints, with the best score."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor and callback.best_model_path:
            log.info(
                "best checkpoint: %s (%s %.4f)",
                callback.best_model_path,
                callback.monitor,
                callback.best_model_score,
            )
        elif callback.last_model_path or callback.best_model_path:
            log.info("checkpoint: %s", callback.last_model_path or callback.best_model_path)


def build_cli(
    args: list[str] | None = None,
    run: bool = True,
    cli_class: type[SERCLI] = SERCLI,
    prog: str = "python -m ser",
) -> SERCLI:
    """The ``ser`` LightningCLI; ``run=False`` only parses and instantiates (tests, notebooks).

    ``cli_class``: a subclass of ``SERCLI`` (``ser.commands.cv`` parses a fit config without
    building it); ``prog``: the command its errors name (``python -m ser cv``).
    """
    return cli_class(
        SERModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        parser_class=SubcommandParser,
        # Each subcommand's parser gets its own kwargs (a LightningCLI feature): here its name.
        parser_kwargs={
            "prog": prog,  # not __main__.py; each subcommand's is "python -m ser fit"
            "parser_mode": "omegaconf",
            **{name: {"for_subcommand": name} for name in cli_class.subcommands()},
        },
        auto_configure_optimizers=False,  # SERModule builds its own (two learning rates)
        # No seed given: 0, what Lightning's default (true) picks, without its warning each run.
        seed_everything_default=0,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m ser fit|validate|test ...`` (from ``ser.commands.table``); ``argv`` includes the
    subcommand and defaults to the command line."""
    build_cli(argv)
