import pytest
import torch
from torch.overrides import TorchFunctionMode

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
