"""``python -m ser fit|validate|test|predict|synth``: LightningCLI plus the demo-corpus writer."""

from __future__ import annotations

import contextvars
import sys
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import (
    LightningArgumentParser,
    LightningCLI,
    SaveConfigCallback,
    _InstantiatorFn,
)

from ser.callbacks import PredictionWriter
from ser.module import SERModule
from ser.transfer import load_checkpoint


class SERCLI(LightningCLI):
    """LightningCLI with the links that keep sizes written once.

    - fit/validate/test: the class names (and so the head size) and the segment length come
      from the datamodule.
    - fit: ``--test_after_fit true`` tests the best checkpoint into the same run directory.
    - predict: the data defaults to ``AudioFilesDataModule`` (``--data.paths``) and the model to
      the checkpoint's own configuration (``--ckpt_path``), whose segment length sets the
      window length; ``--output`` names the CSV.
    """

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any):
        # Lightning builds one parser per subcommand; remember which for add_arguments_to_parser.
        self._parser_subcommand = subcommand
        return super()._prepare_subcommand_parser(klass, subcommand, **kwargs)

    def _add_instantiators(self) -> None:
        super()._add_instantiators()
        self.parser.add_instantiator(
            _DataInstantiator(_InstantiatorFn(cli=self, key="data")),
            LightningDataModule,
            subclasses=True,
            prepend=True,
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # validate/test/predict with --ckpt_path: the checkpoint's model config is the default,
        # so no model config has to be given (Lightning only merges it after a full parse).
        words = list(sys.argv[1:] if args is None else args)
        ckpt_path = _option_value(words, "--ckpt_path")
        if words[:1] and words[0] in ("validate", "test", "predict") and ckpt_path:
            defaults = model_config_of_checkpoint(ckpt_path)
            self._subcommand_parsers[words[0]].set_defaults(defaults)
        super().parse_arguments(parser, args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Our batch sampler deals batches to DDP ranks itself (length grouping needs it).
        parser.set_defaults({"trainer.use_distributed_sampler": False})
        subcommand = getattr(self, "_parser_subcommand", "fit")  # run=False parses like fit
        if subcommand == "predict":
            parser.set_defaults({"data": {"class_path": "ser.data.AudioFilesDataModule"}})
            parser.set_defaults({"trainer.logger": False})  # a CSV, not a new run directory
            parser.link_arguments(
                "model.backbone.init_args.segment_seconds", "data.init_args.window_seconds"
            )
            parser.add_argument(
                "--output",
                type=str,
                default="predictions.csv",
                help="CSV to write: path, pred, one probability column per class",
            )
            return
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments(
            "data.init_args.max_seconds", "model.backbone.init_args.segment_seconds"
        )
        if subcommand == "fit":
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=False,
                help="test the best checkpoint when fit ends",
            )

    def before_predict(self) -> None:
        # Predict has no run directory: the config would land in the working directory.
        self.trainer.callbacks = [
            c for c in self.trainer.callbacks if not isinstance(c, SaveConfigCallback)
        ]
        self.trainer.callbacks.append(PredictionWriter(self.config.predict.output))

    def after_fit(self) -> None:
        if self.config.fit.test_after_fit:
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best")


class _DataInstantiator:
    """LightningCLI's datamodule instantiation, except for datamodules built inside another one.

    LightningCLI hands the ``data`` config to every datamodule it builds as its hyper-parameters;
    the stages a ``CurriculumDataModule`` builds would take the curriculum's config for their own
    (and read wrong split settings from ``self.hparams``). Those are built plainly instead.
    """

    def __init__(self, lightning_instantiator: _InstantiatorFn) -> None:
        self.lightning_instantiator = lightning_instantiator
        self.building = False

    def __call__(
        self, class_type: type, *args: Any, applied_instantiation_links: dict, **kwargs: Any
    ) -> Any:
        if self.building:  # a fresh context: no hyper-parameters given from outside
            return contextvars.Context().run(class_type, *args, **kwargs)
        self.building = True
        try:
            return self.lightning_instantiator(
                class_type, *args, applied_instantiation_links=applied_instantiation_links, **kwargs
            )
        finally:
            self.building = False


def _option_value(words: list[str], option: str) -> str | None:
    """The value of ``--option VALUE`` or ``--option=VALUE`` in ``words``, if given."""
    for i, word in enumerate(words):
        if word == option and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def model_config_of_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """``{"model.<arg>": value}`` from a checkpoint saved by a CLI run; a clear error otherwise."""
    checkpoint = load_checkpoint(ckpt_path, "--ckpt_path")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    if "backbone" not in hparams or "class_names" not in hparams:
        raise ValueError(
            f"--ckpt_path {ckpt_path}: no SERModule configuration in the checkpoint (expected "
            "hyper_parameters with backbone and class_names, as saved by `python -m ser fit`)"
        )
    return {f"model.{key}": value for key, value in hparams.items()}


def build_cli(
    args: list[str] | None = None, run: bool = True, cli_class: type[SERCLI] = SERCLI
) -> SERCLI:
    """The ``ser`` LightningCLI; ``run=False`` only parses and instantiates (tests, notebooks).

    ``cli_class``: a subclass of ``SERCLI`` (``ser.cv`` parses a fit config without building it).
    """
    return cli_class(
        SERModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # SERModule builds its own (two learning rates)
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``ser`` and ``python -m ser``; ``argv`` defaults to the command line."""
    words = sys.argv[1:] if argv is None else argv
    if words[:1] in (["cv"], ["cv-summary"]):
        from ser import cv

        sys.exit(cv.main(words[1:]) if words[0] == "cv" else cv.summary_main(words[1:]))
    if words[:1] == ["synth"]:
        from ser.data.synthetic import main as synth_main

        synth_main(words[1:])
        return
    build_cli(argv)
