import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score
from torch.overrides import TorchFunctionMode

from ser.evaluation import stats
from ser.evaluation.metrics import EmotionMetrics, confusion_figure

CLASSES = ["anger", "neutral", "sadness"]


def one_hot_logits(preds: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(preds), len(CLASSES)).float()


def test_wa_ua_f1_and_recall_per_class():
    metrics = EmotionMetrics(CLASSES, "val")
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    preds = [0, 0, 0, 1, 1, 1, 0, 2]  # recalls: anger 3/4, neutral 2/2, sadness 1/2
    metrics.update(one_hot_logits(preds[:5]), labels[:5])
    metrics.update(one_hot_logits(preds[5:]), labels[5:])
    values = metrics.compute()
    assert values["val/WA"] == pytest.approx(6 / 8)
    assert values["val/UA"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    assert values["val/recall/anger"] == pytest.approx(0.75)
    assert values["val/recall/sadness"] == pytest.approx(0.5)
    # F1 per class: anger p=3/4 r=3/4; neutral p=2/3 r=1; sadness p=1 r=1/2
    f1 = [0.75, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert values["val/F1"] == pytest.approx(sum(f1) / 3)
    matrix = metrics.confusion_matrix()
    assert matrix.tolist() == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_ua_is_balanced_accuracy_over_the_classes_the_labels_hold():
    """A class absent from the labels but predicted (a test speaker without disgust, one
    utterance taken for disgust) is no class with recall 0: UA is sklearn's balanced accuracy,
    the mean recall over the classes present (it was 0.13 UA lower on such an EmoDB fold)."""
    metrics = EmotionMetrics(CLASSES, "test")
    labels = torch.tensor([0, 0, 1, 1])  # no sadness in the labels
    preds = [0, 0, 1, 2]  # one neutral taken for sadness
    metrics.update(one_hot_logits(preds), labels)
    values = metrics.compute()
    expected = balanced_accuracy_score(labels.numpy(), preds)  # sklearn: (1 + 1/2) / 2
    assert values["test/UA"] == pytest.approx(expected) == pytest.approx(0.75)
    assert "test/recall/sadness" not in values  # no sadness label: no recall of it
    found = stats.scores(stats.confusion_of(labels.numpy(), np.array(preds), len(CLASSES)))
    assert float(found["UA"]) == pytest.approx(expected)
    # Macro-F1 keeps the predicted class (F1 0), as sklearn's f1_score over both label sets.
    f1 = f1_score(labels.numpy(), preds, average="macro")
    assert values["test/F1"] == pytest.approx(f1)
    assert float(found["F1"]) == pytest.approx(f1)


def test_reset_forgets_the_previous_epoch():
    metrics = EmotionMetrics(CLASSES, "train")
    metrics.update(one_hot_logits([1, 1]), torch.tensor([0, 0]))
    metrics.reset()
    metrics.update(one_hot_logits([0, 1]), torch.tensor([0, 1]))
    assert metrics.compute()["train/WA"] == pytest.approx(1.0)


def test_confusion_figure_has_one_cell_text_per_pair():
    figure = confusion_figure(torch.tensor([[3, 1, 0], [0, 2, 0], [1, 0, 1]]), CLASSES, "t")
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert len(texts) == 9
    assert texts[0] == "3\n75%"


def test_update_never_waits_for_the_device():
    # On a GPU each torch.unique / .item() in a training step stalls the host until the device
    # catches up; the per-batch metric update must queue work only.
    class HostReads(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if name in ("unique", "item", "tolist", "__bool__", "nonzero", "equal", "cpu"):
                self.ops.append(name)
            return func(*args, **(kwargs or {}))

    metrics = EmotionMetrics(["anger", "neutral", "sadness"], "train")
    with HostReads() as reads:
        metrics.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))
    assert reads.ops == []


def test_a_class_without_labels_has_no_recall():
    """Not a recall of 0: a mean over folds would count it (UA leaves the class out too)."""
    metrics = EmotionMetrics(["anger", "fear", "neutral"], "test")
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 2]), 3).float()
    metrics.update(logits, torch.tensor([0, 2, 2, 0]))  # no fear label; fear predicted once
    values = metrics.compute()
    assert "test/recall/fear" not in values
    assert values["test/recall/anger"] == 0.5 and values["test/recall/neutral"] == 0.5
    assert values["test/UA"] == 0.5
