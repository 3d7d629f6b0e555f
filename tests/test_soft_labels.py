"""Soft targets from rater votes (``--data.soft_labels true``): IEMOCAP's evaluator lines become
votes, the class set maps them, training batches carry their shares and the loss is the soft
cross-entropy; val/test stay on the label."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_process import REPO, TINY_RUN
from corpus_fixtures import write_iemocap, write_shemo
from models_tiny import TINY
from torch.overrides import TorchFunctionMode

from ser.data import IEMOCAPDataModule, ShEMODataModule
from ser.data.corpora import iemocap
from ser.data.dataset import Batch, UtteranceDataset
from ser.data.loader import LoaderSettings
from ser.data.splits import BySession
from ser.data.utterance import Utterance
from ser.labels import IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE, LabelSet
from ser.models import HFBackbone
from ser.training.augment import Augmentation
from ser.training.module import SERModule

TURNS = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E1:\tNeutral state;\t()
C-E2:\tFrustration; Anger;\t()
C-E4:\tNeutral state;\t(bored)
C-F1:\tSadness;\t(tired)
A-E3:\tval 3; act 2; dom  2;\t()

[9.0 - 10.5]\tSes01F_impro01_M000\tang\t[1.5, 4.5, 4.0]
C-E3:\tAnger;\t()
C-M1:\tExcited;\t()
"""


def test_evaluator_lines_become_votes_of_each_turn(tmp_path: Path) -> None:
    path = tmp_path / "Ses01F_impro01.txt"
    path.write_text(TURNS)
    labels = iemocap.read_labels(path)
    # One vote per external evaluator, shared by its categories; self-evaluations left out.
    assert labels["Ses01F_impro01_F000"].votes == {
        "neutral": 2.0,
        "frustration": 0.5,
        "anger": 0.5,
    }
    assert labels["Ses01F_impro01_M000"].votes == {"anger": 1.0}


def test_the_real_files_spelling_and_line_ends_give_the_same_votes(tmp_path: Path) -> None:
    """The release's own lines for this turn: ``Neutral;`` (not ``Neutral state;``), CRLF."""
    path = tmp_path / "Ses01F_impro01.txt"
    real = (
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\r\n"
        "C-E2:\tNeutral;\t()\r\nC-E3:\tNeutral;\t()\r\nC-E4:\tNeutral;\t()\r\n"
        "C-F1:\tNeutral;\t(curious)\r\nA-E3:\tval 3; act 2; dom  2;\t()\r\n\r\n"
    )
    path.write_bytes(real.encode())
    assert iemocap.read_labels(path)["Ses01F_impro01_F000"].votes == {"neutral": 3.0}


def test_scan_gives_every_row_its_votes(tmp_path: Path) -> None:
    rows = {row.utt_id: row for row in iemocap.scan(write_iemocap(tmp_path / "IEMOCAP"))}
    assert rows["Ses01F_impro01_F001"].votes == {"excitement": 1.5, "anger": 0.5}
    assert rows["Ses01F_impro01_M000"].votes == {"anger": 2.0}


def test_votes_map_through_merges_and_leave_out_other_classes() -> None:
    four = LabelSet(IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE)
    votes = {"excitement": 1.0, "happiness": 0.5, "frustration": 1.0, "anger": 0.5}
    assert four.map_votes(votes) == {"happiness": 1.5, "anger": 0.5}
    assert four.map_votes({"frustration": 2.0}) == {}


def test_shares_are_normalised_votes_and_a_row_without_usable_votes_keeps_its_label() -> None:
    def row(utt_id: str, label: str, votes: dict[str, float]) -> Utterance:
        return Utterance(utt_id, f"/{utt_id}.wav", "s", label, 1.0, 16_000, votes=votes)

    rows = [row("a", "neutral", {"neutral": 1.5, "anger": 0.5}), row("b", "anger", {})]
    classes = ["anger", "neutral"]
    # The dataset only asks the cache whether it holds a row: a set of ids will do.
    soft = UtteranceDataset(rows, {"a", "b"}, classes, None, False, soft_labels=True)
    torch.testing.assert_close(soft.label_shares, torch.tensor([[0.25, 0.75], [1, 0]]))
    hard = UtteranceDataset(rows, {"a", "b"}, classes, None, False)
    assert hard.label_shares.shape == (2, 0)


def test_training_batches_carry_the_merged_shares_and_eval_batches_none(
    tmp_path: Path, caplog
) -> None:
    root = write_iemocap(tmp_path / "IEMOCAP")
    loader = LoaderSettings(cache_dir=str(tmp_path / "cache"), batch_size=32, num_workers=0)
    split = BySession(test_session="Session5", val_fraction=0.2)
    dm = IEMOCAPDataModule(str(root), split=split, loader=loader, soft_labels=True)
    dm.prepare_data()
    with caplog.at_level(logging.INFO, logger="ser.data.datamodule"):
        dm.setup("fit")
    train = len(dm.parts["train"])
    assert f"soft labels: {train} of {train} training utterances have votes" in caplog.text
    batch = next(iter(dm.train_dataloader()))
    shares = dict(zip(batch.utt_ids, batch.label_shares.tolist(), strict=True))
    anger, happiness = dm.class_names.index("anger"), dm.class_names.index("happiness")
    excited = shares["Ses01F_impro01_F001"]  # Excited 1.5 (counts as happiness), Anger 0.5
    assert excited[happiness] == pytest.approx(0.75) and excited[anger] == pytest.approx(0.25)
    assert next(iter(dm.val_dataloader())).label_shares.shape[1] == 0
    assert dm.describe()["soft_labels"] is True


def test_soft_labels_on_a_corpus_without_votes_names_it(tmp_path: Path) -> None:
    root = write_shemo(tmp_path / "ShEMO")
    dm = ShEMODataModule(
        str(root), soft_labels=True, loader=LoaderSettings(cache_dir=str(tmp_path))
    )
    with pytest.raises(ValueError, match=rf"ShEMODataModule \({root}\) has none"):
        dm.prepare_data()


@pytest.fixture
def module(monkeypatch) -> SERModule:
    """A 3-class module whose encoder and head are replaced by fixed logits."""
    model_type, config = TINY["wav2vec2-group"]
    backbone = HFBackbone(model_type=model_type, config=config, freeze="none")
    module = SERModule(backbone, ["a", "b", "c"], label_smoothing=0.1)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])
    monkeypatch.setattr(module, "encode", lambda waves, lengths: torch.zeros(3, 1))
    monkeypatch.setattr(module.head, "forward", lambda pooled: logits)
    module.logits = logits
    return module


def batch(labels: list[int], shares: torch.Tensor) -> Batch:
    targets = torch.zeros(3, 0)
    return Batch(torch.randn(3, 800), torch.full((3,), 800), torch.tensor(labels), list("xyz"),
                 targets, shares)  # fmt: skip


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer here
def test_the_loss_is_soft_cross_entropy_with_weights_and_smoothing(module) -> None:
    module.loss_weights.copy_(torch.tensor([1.0, 2.0, 0.5]))
    shares = torch.tensor([[0.75, 0.25, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    loss = module.model_step(batch([0, 1, 2], shares), "train").loss
    smoothed = 0.9 * shares + 0.1 / 3
    weight = module.loss_weights
    per_row = -(smoothed * weight * module.logits.log_softmax(-1)).sum(-1)  # (B,)
    assert float(loss) == pytest.approx(float(per_row.sum() / (shares @ weight).sum()))
    # One-hot shares give exactly the hard loss, weights and smoothing included.
    one_hot = module.model_step(batch([0, 1, 2], torch.eye(3)), "train").loss
    hard = F.cross_entropy(module.logits, torch.arange(3), weight=weight, label_smoothing=0.1)
    assert float(one_hot) == pytest.approx(float(hard))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer here
def test_a_curriculum_stage_renormalises_the_shares_of_its_classes(module) -> None:
    module.use_classes(["a", "b"])
    shares = torch.tensor([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]])
    loss = module.model_step(batch([0, 1, 0], shares), "train").loss
    stage = shares[:, :2] / shares[:, :2].sum(-1, keepdim=True)  # (B, 2)
    expected = F.cross_entropy(module.logits[:, :2], stage, label_smoothing=0.1)
    assert float(loss) == pytest.approx(float(expected))


class BooleanSelections(TorchFunctionMode):
    """Counts the selections by a boolean mask (``x[mask]``, ``nonzero``): each waits for the
    GPU, its result's size being the mask's count."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__getitem__:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            self.count += any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
        self.count += func in (torch.nonzero, torch.Tensor.nonzero, torch.masked_select)
        return func(*args, **(kwargs or {}))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer here
def test_a_stage_with_a_gap_in_its_classes_selects_them_without_a_device_wait(module) -> None:
    """Classes a and c of a, b, c: the hard and the soft loss over their columns, selected by
    index (a boolean mask made every training step of a curriculum's earlier stages wait)."""
    module.use_classes(["a", "c"])
    module.loss_weights.copy_(torch.tensor([1.0, 2.0, 0.5]))
    shares = torch.tensor([[0.5, 0.25, 0.25], [0.4, 0.0, 0.6], [0.2, 0.2, 0.6]])
    with BooleanSelections() as counter:
        hard = module.model_step(batch([0, 2, 2], torch.zeros(3, 0)), "train").loss
        soft = module.model_step(batch([0, 2, 2], shares), "train").loss
    assert counter.count == 0
    columns, weight = module.logits[:, [0, 2]], torch.tensor([1.0, 0.5])
    expected = F.cross_entropy(columns, torch.tensor([0, 1, 1]), weight=weight, label_smoothing=0.1)
    assert float(hard) == pytest.approx(float(expected))
    stage = shares[:, [0, 2]] / shares[:, [0, 2]].sum(-1, keepdim=True)
    smoothed = 0.9 * stage + 0.1 / 2
    per_row = -(smoothed * weight * columns.log_softmax(-1)).sum(-1)
    assert float(soft) == pytest.approx(float(per_row.sum() / (stage @ weight).sum()))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer here
def test_mixup_mixes_the_shares_as_it_mixes_the_audio(module, monkeypatch) -> None:
    module.augmentation = Augmentation(mixup_alpha=1.0)
    partner, share = torch.tensor([1, 2, 0]), 0.7
    monkeypatch.setattr(
        Augmentation, "mixup", lambda self, waves, lengths: (waves, lengths, partner, share)
    )
    shares = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    loss = module.model_step(batch([0, 1, 2], shares), "train").loss
    mixed = share * shares + (1 - share) * shares[partner]
    expected = F.cross_entropy(module.logits, mixed, label_smoothing=0.1)
    assert float(loss) == pytest.approx(float(expected))


def test_a_tiny_fit_with_soft_labels_on_iemocap(tmp_path: Path, ser_cli) -> None:
    root = write_iemocap(tmp_path / "IEMOCAP")
    ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/iemocap.yaml"),
        "--data.root", str(root), "--data.soft_labels", "true",
        "--data.split.val_fraction", "0.2", "--data.loader.cache_dir", str(tmp_path / "cache"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        *TINY_RUN, "--test_after_fit", "true", cwd=tmp_path,
    )  # fmt: skip
    (run_dir,) = (tmp_path / "logs" / "demo").iterdir()
    assert json.loads((run_dir / "splits" / "split.json").read_text())["soft_labels"] is True
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert 0.0 <= metrics["test/UA"] <= 1.0
