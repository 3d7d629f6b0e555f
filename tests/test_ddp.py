"""Real 2-process DDP runs on CPU (gloo) through the CLI, each in its own process group.

What is checked: ranks get disjoint training batches that cover the training set once per epoch;
test metrics and predictions of 2 processes equal those of 1 process on the same checkpoint (with
uneven batch counts per rank); one run directory and one set of checkpoints; LayerDrop and frozen
layers train under DDP (``configs/trainer/ddp.yaml``) and plain DDP fails on LayerDrop; a
feature-store probe extracts once (rank 0) and its 2-process test equals a 1-process one.

The subprocesses import ``RecordBatches`` from this file (``PYTHONPATH`` holds ``tests/``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import rank_workers
import torch
import yaml

from ser.commands.cli import build_cli
from ser.data.sampler import LengthGroupedBatchSampler
from ser.data.synthetic import write_corpus
from ser.models.distributed import seed_training_batch

REPO = Path(__file__).parents[1]
# 4 speakers x 11 files: 34 train, 5 val, 5 test. Batches of 6: 6 train batches, 3 per rank, so
# every item is seen exactly once per epoch. Eval batches of 2: 3 batches, dealt 2 + 1.
DATA_ARGS = [
    "-c", str(REPO / "configs/data/shemo.yaml"),
    "--data.loader.batch_size", "6",
    "--data.loader.eval_batch_size", "2",
    "--data.loader.num_workers", "0",
]  # fmt: skip
DDP_ARGS = ["--trainer.accelerator", "cpu", "--trainer.devices", "2"]
TIMEOUT_S = 300  # a DDP collective mismatch hangs forever; fail instead


class RecordBatches(L.Callback):
    """Writes, per rank, the utt_ids of every batch and a hash of the final weights.

    Args:
        out_dir: folder for ``<stage>_rank<r>.json``.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches: list[tuple[str, int, list[str]]] = []

    def _record(self, trainer: L.Trainer, part: str, batch) -> None:
        if not trainer.sanity_checking:
            self.batches.append((part, trainer.current_epoch, list(batch.utt_ids)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record(trainer, "train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dl_idx=0) -> None:
        self._record(trainer, "val", batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dl_idx=0) -> None:
        self._record(trainer, "test", batch)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
        record = {"batches": self.batches, "weights": digest.hexdigest()}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stage = getattr(stage, "value", stage)  # Lightning passes a str enum: "fit", "test"
        (self.out_dir / f"{stage}_rank{trainer.global_rank}.json").write_text(json.dumps(record))
        self.batches = []


def model_config(path: Path, layerdrop: float, freeze_layers: int) -> Path:
    """The demo config with LayerDrop and frozen bottom layers, written to ``path``."""
    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    init_args = config["model"]["backbone"]["init_args"]
    init_args["config"]["layerdrop"] = layerdrop
    init_args["freeze_layers"] = freeze_layers
    config["trainer"]["log_every_n_steps"] = 1
    path.write_text(yaml.safe_dump(config))
    return path


def read_ids(path: Path) -> set[str]:
    with open(path, newline="") as f:
        return {row["utt_id"] for row in csv.DictReader(f)}


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["utt_id"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    write_corpus("shemo", work / "ShEMO", num_speakers=4, utterances_per_speaker=11, seed=1)
    cache = str(work / "cache")
    return work, ["--data.root", str(work / "ShEMO"), "--data.loader.cache_dir", cache]


@pytest.fixture(scope="module")
def ddp_run(corpus, ser_cli):
    """2-process fit + test of the best checkpoint; LayerDrop on, bottom layer frozen."""
    work, data = corpus
    config = model_config(work / "layerdrop.yaml", layerdrop=0.5, freeze_layers=1)
    ser_cli(
        "fit", "-c", str(config), "-c", str(REPO / "configs/trainer/ddp.yaml"),
        *DATA_ARGS, *data, *DDP_ARGS,
        "--trainer.max_epochs", "2",
        "--trainer.logger.init_args.save_dir", str(work / "logs"),
        "--trainer.callbacks+=test_ddp.RecordBatches",
        "--trainer.callbacks.out_dir", str(work / "seen"),
        "--test_after_fit", "true", cwd=work, timeout=TIMEOUT_S,
    )  # fmt: skip
    (run_dir,) = (work / "logs" / "demo").iterdir()  # one run directory, not one per rank
    seen = {
        (stage, rank): json.loads((work / "seen" / f"{stage}_rank{rank}.json").read_text())
        for stage in ("fit", "test")
        for rank in (0, 1)
    }
    return {"work": work, "data": data, "run_dir": run_dir, "seen": seen}


def batches_of(record: dict, part: str, epoch: int | None = None) -> list[list[str]]:
    return [ids for p, e, ids in record["batches"] if p == part and epoch in (None, e)]


def test_ranks_split_each_epoch_into_disjoint_batches_covering_the_training_set(ddp_run):
    train_ids = read_ids(ddp_run["run_dir"] / "splits" / "train.csv")
    assert len(train_ids) == 34
    ranks = [ddp_run["seen"][("fit", rank)] for rank in (0, 1)]
    orders = []
    for epoch in (0, 1):
        per_rank = [batches_of(record, "train", epoch) for record in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == 3  # equal step counts: no DDP stall
        ids = [utt for batches in per_rank for batch in batches for utt in batch]
        assert sorted(ids) == sorted(train_ids)  # every item once, no rank overlap
        orders.append(ids)
    assert orders[0] != orders[1]  # set_epoch reached the sampler: new batches each epoch
    for epoch in (0, 1):  # validation: every item exactly once across ranks
        ids = [u for record in ranks for batch in batches_of(record, "val", epoch) for u in batch]
        assert sorted(ids) == sorted(read_ids(ddp_run["run_dir"] / "splits" / "val.csv"))


def test_ranks_end_with_the_same_weights_and_one_set_of_files(ddp_run):
    seen = ddp_run["seen"]
    assert seen[("fit", 0)]["weights"] == seen[("fit", 1)]["weights"]  # gradients all-reduced
    run_dir = ddp_run["run_dir"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]  # written once by rank 0, no best-v1.ckpt
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "splits", "test_metrics.json", "predictions.csv"} <= names
    assert not list(run_dir.rglob("*.tmp*"))
    # Both ranks' training inputs are counted (predict's window length comes from them), not
    # rank 0's half: 34 items a epoch, 2 epochs.
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["trained_lengths"].sum() == 2 * 34


def test_two_process_test_equals_one_process_test(ddp_run, tmp_path):
    test_ids = read_ids(ddp_run["run_dir"] / "splits" / "test.csv")
    per_rank = [batches_of(ddp_run["seen"][("test", rank)], "test") for rank in (0, 1)]
    assert [len(b) for b in per_rank] == [2, 1]  # uneven batch counts, and no hang
    assert sorted(u for batches in per_rank for b in batches for u in b) == sorted(test_ids)

    # The same checkpoint, data and batches in this process, on one device.
    ckpt = ddp_run["run_dir"] / "checkpoints" / "best.ckpt"
    args = ["test", "--ckpt_path", str(ckpt), *DATA_ARGS, *ddp_run["data"]]
    args += ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    cli = build_cli([*args, "--trainer.default_root_dir", str(tmp_path)])
    single_dir = Path(cli.trainer.log_dir)

    two = json.loads((ddp_run["run_dir"] / "test_metrics.json").read_text())
    one = json.loads((single_dir / "test_metrics.json").read_text())
    assert set(two) == set(one)
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)  # loss: weighted by items, not ranks
    rows_two = read_rows(ddp_run["run_dir"] / "predictions.csv")
    rows_one = read_rows(single_dir / "predictions.csv")
    assert set(rows_two) == set(rows_one) == test_ids  # gathered from both ranks, complete
    for utt_id, row in rows_one.items():
        assert rows_two[utt_id]["pred"] == row["pred"]
        probs = [float(v) for k, v in row.items() if k.startswith("prob_")]
        probs_two = [float(v) for k, v in rows_two[utt_id].items() if k.startswith("prob_")]
        assert probs_two == pytest.approx(probs, abs=2e-5)


@pytest.mark.parametrize("num_items", [2, 3, 5])
def test_every_rank_gets_an_eval_batch_when_there_are_fewer_batches_than_ranks(num_items):
    # A rank without a batch skips the loop and its epoch-end metric sync: the others hang.
    lengths = list(range(100, 100 + num_items))
    per_rank = [
        list(LengthGroupedBatchSampler(lengths, 8, shuffle=False, num_replicas=2, rank=r))
        for r in (0, 1)
    ]
    assert all(len(batches) == 1 for batches in per_rank)
    assert sorted(i for batches in per_rank for b in batches for i in b) == list(range(num_items))


@pytest.mark.slow
def test_plain_ddp_fails_on_layerdrop(corpus, ser_cli):
    # Why configs/trainer/ddp.yaml sets ddp_find_unused_parameters_true.
    work, data = corpus
    config = model_config(work / "layerdrop_plain.yaml", layerdrop=0.9, freeze_layers=0)
    result = ser_cli(
        "fit", "-c", str(config), *DATA_ARGS, *data, *DDP_ARGS,
        "--trainer.strategy", "ddp", "--trainer.max_epochs", "2",
        "--trainer.logger.init_args.save_dir", str(work / "plain"),
        cwd=work, check=False, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode != 0
    assert "find_unused_parameters" in result.stderr


@pytest.mark.slow
def test_plain_ddp_trains_frozen_layers_and_a_tiny_val_set(corpus, ser_cli):
    # Frozen weights need no unused-parameter search; a val set smaller than two batches is cut
    # so that both ranks validate (else: deadlock in the metric sync).
    work, data = corpus
    config = model_config(work / "frozen.yaml", layerdrop=0.0, freeze_layers=1)
    ser_cli(
        "fit", "-c", str(config), *DATA_ARGS, *data, *DDP_ARGS,
        "--data.loader.eval_batch_size", "8", "--trainer.strategy", "ddp",
        "--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(work / "frozen"),
        cwd=work, timeout=TIMEOUT_S,
    )  # fmt: skip
    (run_dir,) = (work / "frozen" / "demo").iterdir()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()


def test_a_feature_store_probe_under_ddp_extracts_once_and_tests_as_one_process(
    corpus, ser_cli, tmp_path
):
    """Rank 0 builds the store and an augmented copy of it while rank 1 waits; both train from
    them; the 2-process test of the checkpoint equals a 1-process test."""
    work, data = corpus
    cache = ["--data.loader.cache_dir", str(tmp_path / "cache")]  # a store of its own
    probe = [
        "--model.backbone.init_args.freeze", "all",
        "--model.backbone.init_args.layer_weighting", "true",
        "--model.head.init_args.standardize", "true", "--model.feature_store", "statistics",
        "--model.augmentation.noise_snr_db", "[0, 10]", "--model.feature_store_views", "1",
    ]  # fmt: skip
    result = ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), *DATA_ARGS, *data, *cache, *DDP_ARGS,
        *probe, "--trainer.max_epochs", "2", "--trainer.logger.init_args.save_dir",
        str(tmp_path / "logs"), "--trainer.callbacks+=test_ddp.RecordBatches",
        "--trainer.callbacks.out_dir", str(tmp_path / "seen"), "--test_after_fit", "true",
        cwd=work, timeout=TIMEOUT_S,
    )  # fmt: skip
    stores = sorted((tmp_path / "cache").glob("*/features/*"))
    built = re.findall(r"Feature store( \(augmented copy 1\))? (\S+) \(built in ", result.stderr)
    assert sorted(Path(folder) for _, folder in built) == stores  # each once: rank 0 only
    assert sorted(copy for copy, _ in built) == ["", " (augmented copy 1)"]
    seen = [json.loads((tmp_path / "seen" / f"fit_rank{r}.json").read_text()) for r in (0, 1)]
    assert seen[0]["weights"] == seen[1]["weights"]
    assert all(batches_of(record, "train") for record in seen)  # both ranks trained

    (run_dir,) = (tmp_path / "logs" / "demo").iterdir()
    # The standardized head's statistics and the trained lengths pool both ranks' stored rows
    # (34 a epoch, 2 epochs), not rank 0's half.
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["head.standardize.count"] == state["trained_lengths"].sum() == 2 * 34
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    args = ["test", "--ckpt_path", str(ckpt), *DATA_ARGS, *data, *cache]
    args += ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    single_dir = Path(
        build_cli([*args, "--trainer.default_root_dir", str(tmp_path)]).trainer.log_dir
    )
    two = json.loads((run_dir / "test_metrics.json").read_text())
    one = json.loads((single_dir / "test_metrics.json").read_text())
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)
    assert sorted((tmp_path / "cache").glob("*/features/*")) == stores  # the test built none


def test_each_rank_and_each_batch_draw_their_own_after_one_seed(monkeypatch):
    """seed_everything gives every rank one random state: each step's batches drew the same speed,
    noise rows, SpecAugment masks and dropout on every rank. Seeded by (run seed, epoch, batch,
    rank), the ranks draw their own, reproducibly, whatever ran before in the process (a resumed
    run draws what the uninterrupted one drew)."""

    def draws(epoch: int, batch: int, rank: int) -> tuple:
        seed_training_batch(epoch, batch, rank)
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    L.seed_everything(0)
    first = draws(0, 0, 0)
    assert first != draws(0, 0, 1) and draws(0, 0, 1) == draws(0, 0, 1)
    assert len({first, draws(0, 1, 0), draws(1, 0, 0)}) == 3
    torch.rand(100), np.random.rand(7), random.random()  # whatever ran before
    assert draws(0, 0, 0) == first
    monkeypatch.delenv("PL_GLOBAL_SEED")
    random.seed(5)
    before = random.getstate()
    seed_training_batch(0, 0, 1)  # no run seed: each process drew its own already
    assert random.getstate() == before


def test_ranks_wait_for_rank_zero_longer_than_the_process_groups_timeout(tmp_path):
    """Rank 0 builds a feature store alone while the others wait (open_feature_store): over a
    large corpus longer than the group's timeout (30 min by default), a plain barrier fails."""
    torch.multiprocessing.spawn(rank_workers.wait_late, args=(tmp_path, 4.0), nprocs=2)
    assert {path.name for path in tmp_path.glob("rank*")} == {"rank0", "rank1"}
