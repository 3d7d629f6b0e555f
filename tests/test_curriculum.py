"""The cross-lingual curriculum (IEMOCAP -> ShEMO in one fit), its resume, and ``init_from``."""

from __future__ import annotations

import os
import re
import signal
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from models_tiny import TINY

from ser.data import CurriculumDataModule, IEMOCAPDataModule, ShEMODataModule
from ser.data.loader import LoaderSettings
from ser.data.splits import BySession
from ser.data.synthetic import write_corpus
from ser.labels import IEMOCAP_4_CLASSES, SHEMO_CLASSES
from ser.models import HFBackbone
from ser.training.callbacks import Curriculum, _demote_earlier_scores
from ser.training.module import SERModule

REPO = Path(__file__).parents[1]
SECONDS = 2.0
# No dropout: a resumed process must draw no random numbers the uninterrupted one did not.
TINY_CONFIG = {
    **TINY["wav2vec2-group"][1],
    **dict.fromkeys(["hidden_dropout", "attention_dropout", "activation_dropout"], 0.0),
    **dict.fromkeys(["feat_proj_dropout", "final_dropout"], 0.0),
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("curriculum")
    # 4 IEMOCAP speakers fill Sessions 1-2 (Session 2 is the test session here).
    write_corpus("iemocap", root / "IEMOCAP", num_speakers=4, utterances_per_speaker=10, seed=1)
    write_corpus("shemo", root / "ShEMO", num_speakers=4, utterances_per_speaker=9, seed=2)
    return root


def stage_args(corpora: Path) -> dict:
    return {
        "iemocap": {"root": str(corpora / "IEMOCAP"), "split": BySession("Session2")},
        "shemo": {"root": str(corpora / "ShEMO")},
    }


def loader_settings(corpora: Path) -> dict:
    """Every stage's loader: small batches, short crops, the test's own cache."""
    return {
        "batch_size": 4, "num_workers": 0, "max_seconds": SECONDS, "eval_max_seconds": SECONDS,
        "cache_dir": str(corpora / "cache"),
    }  # fmt: skip


def curriculum(corpora: Path, epochs: dict[str, int]) -> CurriculumDataModule:
    args = stage_args(corpora)
    return CurriculumDataModule(
        stages={
            "iemocap": partial(IEMOCAPDataModule, **args["iemocap"]),
            "shemo": partial(ShEMODataModule, **args["shemo"]),
        },
        epochs=epochs,
        loader=LoaderSettings(**loader_settings(corpora)),
    )


def tiny_module(class_names, seed: int = 0, **kwargs) -> SERModule:
    torch.manual_seed(seed)
    backbone = HFBackbone(
        model_type="wav2vec2", config=TINY_CONFIG, freeze="none", segment_seconds=SECONDS
    )
    # No weight decay: rows without gradient then stay bit-exact (AdamW decays every row).
    optimizer = partial(torch.optim.AdamW, weight_decay=0.0)
    return SERModule(backbone, class_names, optimizer=optimizer, warmup_fraction=0.5, **kwargs)


def trainer(max_epochs: int, callbacks: list, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs, limit_train_batches=2, limit_val_batches=1,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, **kwargs,
    )  # fmt: skip


class Probe(Callback):
    """What each epoch trained and validated on, and the optimizer it stepped with."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.head_at_start: torch.Tensor | None = None

    def on_fit_start(self, trainer, pl_module):
        self.head_at_start = pl_module.head.linear.weight.detach().clone()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx > 0:
            return
        optimizer = trainer.optimizers[0]
        self.epochs.append(
            {
                "train": _corpus(batch.utt_ids),
                "optimizer": id(optimizer),
                "optimizer_state": len(optimizer.state),
                "schedule_step": trainer.lr_scheduler_configs[0].scheduler.last_epoch,
                "schedule_steps": pl_module.schedule_steps,
                "classes": pl_module.active_classes.tolist(),
            }
        )

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0 and not trainer.sanity_checking:
            self.epochs[-1]["val"] = _corpus(batch.utt_ids)

    def on_train_epoch_end(self, trainer, pl_module):  # runs before Curriculum's (list order)
        self.epochs[-1]["head"] = pl_module.head.linear.weight.detach().clone()


def _corpus(utt_ids: list[str]) -> str:
    (corpus,) = {"iemocap" if u.startswith("Ses") else "shemo" for u in utt_ids}
    return corpus


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "keep"])
def test_stage_switch_changes_loaders_and_resets_the_optimizer(corpora, reset):
    datamodule = curriculum(corpora, {"iemocap": 2, "shemo": 1})
    model = tiny_module(datamodule.class_names)
    probe = Probe()
    trainer(3, [probe, Curriculum(reset_optimizer=reset)]).fit(model, datamodule=datamodule)
    first, second, third = probe.epochs

    assert [e["train"] for e in probe.epochs] == ["iemocap", "iemocap", "shemo"]
    assert [e["val"] for e in probe.epochs] == ["iemocap", "iemocap", "shemo"]
    assert first["optimizer"] == second["optimizer"] and second["optimizer_state"] > 0
    iemocap_only = [name in IEMOCAP_4_CLASSES for name in SHEMO_CLASSES]
    assert first["classes"] == second["classes"] == iemocap_only
    assert third["classes"] == [True] * len(SHEMO_CLASSES)
    if reset:  # a new optimizer with no state; the schedule restarts and spans the stage
        assert third["optimizer"] != second["optimizer"] and third["optimizer_state"] == 0
        assert (first["schedule_steps"], third["schedule_steps"]) == (4, 2)
        assert third["schedule_step"] == 0
    else:  # one optimizer and one schedule over both stages
        assert third["optimizer"] == second["optimizer"] and third["optimizer_state"] > 0
        assert first["schedule_steps"] == third["schedule_steps"] == 6
        assert third["schedule_step"] == 4

    # One head carries over by name: rows of the classes IEMOCAP lacks (fear, surprise) got no
    # gradient in stage 1 and keep their initialisation; the others learned.
    start, end_of_iemocap = probe.head_at_start, second["head"]
    for row, name in enumerate(SHEMO_CLASSES):
        unchanged = torch.equal(start[row], end_of_iemocap[row])
        assert unchanged == (name not in IEMOCAP_4_CLASSES), name
    fear = SHEMO_CLASSES.index("fear")
    assert not torch.equal(start[fear], third["head"][fear])  # ShEMO trains it
    assert float(model.trainer.callback_metrics["curriculum/stage"]) == 1.0


class EpochLog(Callback):
    """Per epoch: the corpora of its training batches, their count, and whether it validated."""

    def __init__(self) -> None:
        self.train: list[set[str]] = []
        self.batches: list[int] = []
        self.validated: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.train.append(set())
        self.batches.append(0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train[-1].add(_corpus(batch.utt_ids))
        self.batches[-1] += 1

    def on_validation_epoch_end(self, trainer, pl_module):
        self.validated.append(trainer.current_epoch)


def test_every_epoch_deals_all_its_stages_batches_and_validates(corpora):
    # No limit_train_batches: the stages' batch counts differ, and Lightning must read the
    # train loader's length again at the switch (a stale length skips validation or cuts it).
    datamodule = curriculum(corpora, {"iemocap": 1, "shemo": 2})
    epochs = EpochLog()
    L.Trainer(
        max_epochs=3, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[epochs, Curriculum()],
    ).fit(tiny_module(datamodule.class_names), datamodule=datamodule)  # fmt: skip

    counts = [datamodule.num_train_batches(stage) for stage in (0, 1)]
    assert counts[0] != counts[1]
    assert epochs.batches == [counts[0], counts[1], counts[1]]
    assert epochs.train == [{"iemocap"}, {"shemo"}, {"shemo"}]
    assert epochs.validated == [0, 1, 2]


@pytest.mark.parametrize(("reset", "expected"), [(True, (4, 1)), (False, (5, 5))])
def test_schedule_length_follows_max_steps(corpora, reset, expected):
    datamodule = curriculum(corpora, {"iemocap": 2, "shemo": 1})  # 4 + 2 steps, cut at 5
    probe = Probe()
    trainer(3, [probe, Curriculum(reset_optimizer=reset)], max_steps=5).fit(
        tiny_module(datamodule.class_names), datamodule=datamodule
    )
    first, _, third = probe.epochs
    assert (first["schedule_steps"], third["schedule_steps"]) == expected


def test_curriculum_checks_its_plan(corpora):
    datamodule = curriculum(corpora, {"iemocap": 1, "shemo": 1})
    with pytest.raises(ValueError, match="add up to 2 epochs"):
        trainer(3, [Curriculum()]).fit(tiny_module(datamodule.class_names), datamodule=datamodule)
    with pytest.raises(RuntimeError, match="Curriculum callback"):
        trainer(2, []).fit(tiny_module(datamodule.class_names), datamodule=datamodule)
    frozen = HFBackbone(
        model_type="wav2vec2", config=TINY_CONFIG, freeze="all", segment_seconds=SECONDS
    )
    probe = SERModule(frozen, datamodule.class_names, feature_store="statistics")
    with pytest.raises(ValueError, match=r"CurriculumDataModule has none.*feature_store none"):
        trainer(2, [Curriculum()]).fit(probe, datamodule=datamodule)
    args = stage_args(corpora)
    with pytest.raises(ValueError, match=r"\['frustration'\] that the final stage"):
        CurriculumDataModule(
            stages={
                "iemocap": partial(
                    IEMOCAPDataModule,
                    **{**args["iemocap"], "classes": ["anger", "frustration"], "merge": {}},
                ),
                "shemo": partial(ShEMODataModule, **args["shemo"]),
            },
            epochs={"iemocap": 1, "shemo": 1},
        )
    # One loader group for every stage: a stage's own would be silently replaced.
    with pytest.raises(ValueError, match="'shemo' has loader settings of its own"):
        CurriculumDataModule(
            stages={
                "iemocap": partial(IEMOCAPDataModule, **args["iemocap"]),
                "shemo": partial(ShEMODataModule, **args["shemo"], loader=LoaderSettings(seed=1)),
            },
            epochs={"iemocap": 1, "shemo": 1},
        )
    # The model's outputs are the final stage's dimensions: a stage giving them in another order
    # trained the arousal output on valence ratings; one without them crashed in the loss.
    for first in (["valence", "arousal"], []):
        message = re.escape(f"stage 'first' has dimensions {first}, the final")
        with pytest.raises(ValueError, match=message):
            CurriculumDataModule(
                stages={
                    "first": partial(IEMOCAPDataModule, **args["iemocap"], dimensions=first),
                    "final": partial(
                        IEMOCAPDataModule, **args["iemocap"], dimensions=["arousal", "valence"]
                    ),
                },
                epochs={"first": 1, "final": 1},
            )


def test_final_stage_scores_alone_decide_the_best_checkpoint(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/UA", mode="max", filename="best")
    stopping = EarlyStopping(monitor="val/UA", mode="max", patience=1)
    pl_trainer = L.Trainer(callbacks=[checkpoint, stopping], logger=False)
    best = str(tmp_path / "best.ckpt")
    checkpoint.best_k_models = {best: torch.tensor(0.9)}  # an IEMOCAP-stage epoch
    checkpoint.best_model_path, checkpoint.best_model_score = best, torch.tensor(0.9)
    checkpoint.kth_best_model_path, checkpoint.kth_value = best, torch.tensor(0.9)
    stopping.best_score, stopping.wait_count = torch.tensor(0.9), 1

    _demote_earlier_scores(pl_trainer)

    # A poor first ShEMO score beats it, and is written over the same file (no best-v1.ckpt).
    assert checkpoint.check_monitor_top_k(pl_trainer, torch.tensor(0.1))
    assert checkpoint.best_k_models == {best: torch.tensor(float("-inf"))}
    assert stopping.wait_count == 0 and stopping.best_score == float("-inf")


class StageScore(Callback):
    """Logs ``score`` at each validation: high in the earlier stage, low in the final one."""

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            stage = trainer.datamodule.stage_at(trainer.current_epoch)
            pl_module.log("score", [0.9, 0.1][stage] - 0.01 * trainer.current_epoch)


def test_the_best_checkpoint_is_a_final_stage_epoch_in_a_run_and_its_resume(corpora, tmp_path):
    """The stage switch runs at the end of the earlier stage's last epoch, before Lightning's
    checkpoint callbacks save that epoch: demoting scores there made that IEMOCAP epoch "best"
    (against the demoted scores), and the ShEMO test ran on it. A run resumed from that epoch's
    checkpoint has to demote as well."""

    def fit(ckpt_path: str | None = None) -> dict:
        datamodule = curriculum(corpora, {"iemocap": 2, "shemo": 2})
        best = ModelCheckpoint(tmp_path, "best", monitor="score", mode="max")
        every = ModelCheckpoint(tmp_path, "{epoch}", save_top_k=-1)
        pl_trainer = L.Trainer(
            max_epochs=4, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
            logger=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[best, every, StageScore(), Curriculum()],
        )  # fmt: skip
        pl_trainer.fit(tiny_module(datamodule.class_names), datamodule, ckpt_path=ckpt_path)
        return torch.load(best.best_model_path, map_location="cpu", weights_only=False)

    assert fit()["epoch"] == 2  # the first ShEMO epoch (0.08), not IEMOCAP's epoch 1 (0.89)
    (tmp_path / "best.ckpt").unlink()
    assert fit(ckpt_path=str(tmp_path / "epoch=1.ckpt"))["epoch"] == 2


# --- resume: a real run killed in stage 2 ends with the weights of an uninterrupted one ----------


class KillAt(Callback):
    """SIGKILLs its own process at the start of batch ``batch`` of epoch ``epoch``: a crash that
    leaves only what was on disk (the last checkpoint of the previous epoch)."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


def write_run_config(corpora: Path, work: Path) -> Path:
    """A deterministic 3-epoch curriculum fit: IEMOCAP for 1 epoch, then ShEMO for 2."""
    args = stage_args(corpora)
    session = {"class_path": "ser.data.splits.BySession", "init_args": {"test_session": "Session2"}}
    args["iemocap"]["split"] = session  # as written in YAML
    classes = {"iemocap": "IEMOCAPDataModule", "shemo": "ShEMODataModule"}
    stages = {
        name: {"class_path": f"ser.data.{cls}", "init_args": args[name]}
        for name, cls in classes.items()
    }
    model = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["model"]
    model["backbone"]["init_args"]["config"] = TINY_CONFIG
    logger = {"save_dir": str(work / "logs"), "name": "run"}
    tensorboard = "lightning.pytorch.loggers.TensorBoardLogger"
    latest = {"filename": "last"}
    best = {"monitor": "val/UA", "mode": "max", "filename": "best"}
    trainer_config = {
        "max_epochs": 3,
        "limit_train_batches": 3,
        "limit_val_batches": 2,
        "deterministic": True,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "logger": {"class_path": tensorboard, "init_args": logger},
        "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": best},
            # last.ckpt every epoch (Lightning 2.6's save_last only writes it on a new best)
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": latest},
            {"class_path": "ser.training.callbacks.Curriculum"},
        ],
    }
    loader = {**loader_settings(corpora), "cache_dir": str(work)}
    data = {"stages": stages, "epochs": {"iemocap": 1, "shemo": 2}, "loader": loader}
    config = {
        "seed_everything": 0,
        "trainer": trainer_config,
        "model": model,
        "data": {"class_path": "ser.data.CurriculumDataModule", "init_args": data},
    }
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def final_checkpoint(work: Path, version: int) -> dict:
    path = work / "logs" / "run" / f"version_{version}" / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)


def curriculum_state(checkpoint: dict) -> dict:
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("Curriculum")]
    return state


@pytest.mark.parametrize(
    ("kill_epoch", "resumes_from"),
    [
        (2, "the middle of stage 2"),
        pytest.param(1, "the end of stage 1", marks=pytest.mark.slow),
    ],
)
def test_killed_run_resumes_to_the_uninterrupted_weights(
    corpora, tmp_path, kill_epoch, resumes_from, ser_cli
):
    config = write_run_config(corpora, tmp_path)

    def ser_fit(*args: str, check: bool = True):
        return ser_cli("fit", "-c", str(config), *args, cwd=tmp_path, check=check)

    ser_fit()  # version_0: uninterrupted
    killed = ser_fit(
        "--trainer.callbacks+=test_curriculum.KillAt",
        f"--trainer.callbacks.epoch={kill_epoch}", "--trainer.callbacks.batch=1", check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]  # version_1
    last = tmp_path / "logs" / "run" / "version_1" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["epoch"] == kill_epoch - 1 and curriculum_state(saved)["names"] == [
        "iemocap",
        "shemo",
    ], resumes_from
    ser_fit("--ckpt_path", str(last))  # continues in version_1

    assert sorted(p.name for p in (tmp_path / "logs" / "run").iterdir()) == [
        "version_0",
        "version_1",
    ]
    uninterrupted, resumed = final_checkpoint(tmp_path, 0), final_checkpoint(tmp_path, 1)
    assert resumed["global_step"] == uninterrupted["global_step"] == 9
    assert curriculum_state(resumed)["stage"] == 1
    assert resumed["state_dict"].keys() == uninterrupted["state_dict"].keys()
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    # Optimizer and schedule ended in the same state too.
    assert resumed["lr_schedulers"] == uninterrupted["lr_schedulers"]
    (a,), (b,) = resumed["optimizer_states"], uninterrupted["optimizer_states"]
    for index, state in b["state"].items():
        assert torch.equal(a["state"][index]["exp_avg_sq"], state["exp_avg_sq"])
    # Tested again with the fit's configuration, in a new process: the stage is read, not entered.
    tested = ser_cli("test", "-c", str(config), "--ckpt_path", str(last), cwd=tmp_path)
    assert "test/UA" in tested.stdout


# --- init_from: the sequential route ------------------------------------------------------------


def test_init_from_maps_the_head_by_class_name(tmp_path):
    iemocap_model = tiny_module(list(IEMOCAP_4_CLASSES), seed=1)
    path = tmp_path / "iemocap.ckpt"
    torch.save(
        {
            "state_dict": iemocap_model.state_dict(),
            "hyper_parameters": {"class_names": list(IEMOCAP_4_CLASSES)},
        },
        path,
    )
    fresh = tiny_module(list(SHEMO_CLASSES), seed=2)
    model = tiny_module(list(SHEMO_CLASSES), seed=2, init_from=str(path))
    pl_trainer = L.Trainer(limit_train_batches=0, limit_val_batches=0, logger=False)
    pl_trainer.fit(model, train_dataloaders=[], val_dataloaders=[])  # on_fit_start applies it

    source = iemocap_model.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith(("backbone.", "pooling.")):
            assert torch.equal(value, source[key]), key
    for name in SHEMO_CLASSES:
        row, mine = SHEMO_CLASSES.index(name), model.head.linear
        if name in IEMOCAP_4_CLASSES:
            theirs, index = iemocap_model.head.linear, IEMOCAP_4_CLASSES.index(name)
        else:  # fear, surprise: this model's own initialisation
            theirs, index = fresh.head.linear, row
        assert torch.equal(mine.weight[row], theirs.weight[index]), name
        assert torch.equal(mine.bias[row], theirs.bias[index]), name


def test_init_from_refuses_another_backbone(tmp_path):
    other = SERModule(
        HFBackbone(
            model_type="wav2vec2", config={**TINY_CONFIG, "hidden_size": 48},
            segment_seconds=SECONDS,
        ),
        list(IEMOCAP_4_CLASSES),
    )  # fmt: skip
    path = tmp_path / "other.ckpt"
    torch.save(
        {"state_dict": other.state_dict(), "hyper_parameters": {"class_names": ["anger", "fear"]}},
        path,
    )
    model = tiny_module(list(SHEMO_CLASSES), init_from=str(path))
    with pytest.raises(ValueError, match=r"does not fit this model.*backbone"):
        L.Trainer(limit_train_batches=0, logger=False).fit(model, train_dataloaders=[])
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        model.hparams.init_from = str(tmp_path / "missing.ckpt")
        L.Trainer(limit_train_batches=0, logger=False).fit(model, train_dataloaders=[])
