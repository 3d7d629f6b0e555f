"""The CLI on clusters: Lightning's SLURM and torchrun environments are picked up from variables.

No cluster here: the tests set the variables ``srun`` / ``torchrun`` would set for one task, build
the CLI without running it, and check the ranks the Trainer would use. The sbatch examples in
``scripts/slurm/`` are run with a fake ``srun`` that records its command, which is then parsed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from lightning.fabric.plugins.environments import (
    LightningEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only

from ser.commands.cli import build_cli
from ser.commands.cv import plan_folds
from ser.commands.runs import RUN_DIR_ENV

REPO = Path(__file__).parents[1]
SCRIPTS = REPO / "scripts" / "slurm"
# Task 6 of `sbatch --nodes=2 --ntasks-per-node=4`: second node, local rank 2.
SLURM_TASK = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "ser-fit",
    "SLURM_NTASKS": "8",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_NNODES": "2",
    "SLURM_PROCID": "6",
    "SLURM_LOCALID": "2",
    "SLURM_NODEID": "1",
    "SLURM_NODELIST": "gpu[017-018]",
    "SLURM_JOB_NODELIST": "gpu[017-018]",
    "SLURM_CPUS_PER_TASK": "8",
}


@pytest.fixture
def slurm_task(monkeypatch, tmp_path):
    """The variables of one srun task; MASTER_ADDR/PORT (Lightning sets them) restored after."""
    for name in [n for n in os.environ if n.startswith(("SLURM_", "TORCHELASTIC_"))]:
        monkeypatch.delenv(name)
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.setenv(name, "unset")  # records the original value for the teardown
        monkeypatch.delenv(name)
    for name, value in SLURM_TASK.items():
        monkeypatch.setenv(name, value)
    # Lightning sets the process-wide rank from the task's variables, and ser.commands.runs leaves
    # the run directory for DDP children in the environment: both are restored for the tests
    # after this.
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    monkeypatch.setenv(RUN_DIR_ENV, "unset")
    monkeypatch.delenv(RUN_DIR_ENV)
    monkeypatch.chdir(tmp_path)  # nothing may be written, but never into the repository
    return monkeypatch


def demo_args(*extra: str) -> list[str]:
    return [
        "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "-c", str(REPO / "configs/trainer/ddp.yaml"), "--data.root", "ShEMO",
        "--trainer.accelerator", "cpu", *extra,
    ]  # fmt: skip


def test_cli_takes_ranks_and_world_size_from_slurm(slurm_task):
    cli = build_cli(demo_args("--trainer.devices", "4", "--trainer.num_nodes", "2"), run=False)
    trainer = cli.trainer
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (
        8,
        6,
        2,
        1,
    )
    assert environment.main_address == "gpu017"  # first node of the job's node list
    assert environment.main_port == 15000 + 4242  # derived from the job id: same on every task
    assert environment.creates_processes_externally  # srun made them: Lightning starts none
    assert isinstance(trainer.strategy, DDPStrategy)
    ddp_kwargs = trainer.strategy._ddp_kwargs  # configs/trainer/ddp.yaml
    assert ddp_kwargs["find_unused_parameters"] and ddp_kwargs["gradient_as_bucket_view"]


def test_devices_that_disagree_with_slurm_are_refused_at_launch(slurm_task):
    trainer = build_cli(demo_args("--trainer.devices", "2", "--trainer.num_nodes", "2"), run=False)
    trainer = trainer.trainer
    with pytest.raises(ValueError, match="ntasks-per-node=4"):  # what fit's launcher checks
        trainer.strategy.launcher.launch(lambda: None)


def test_interactive_slurm_shell_is_not_a_slurm_job(slurm_task):
    # `salloc` / `srun --pty bash`: one process started by hand, not one per task.
    slurm_task.setenv("SLURM_JOB_NAME", "bash")
    for name in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"):
        slurm_task.setenv(name, "1")
    cli = build_cli(demo_args("--trainer.devices", "1"), run=False)
    assert isinstance(cli.trainer.strategy.cluster_environment, LightningEnvironment)


def test_torchrun_has_priority_over_slurm(slurm_task):
    torchrun = {"TORCHELASTIC_RUN_ID": "4242", "RANK": "5", "LOCAL_RANK": "1", "GROUP_RANK": "1"}
    torchrun |= {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "gpu017"}
    for name, value in {**torchrun, "MASTER_PORT": "29500"}.items():
        slurm_task.setenv(name, value)
    cli = build_cli(demo_args("--trainer.devices", "4", "--trainer.num_nodes", "2"), run=False)
    trainer = cli.trainer
    assert isinstance(trainer.strategy.cluster_environment, TorchElasticEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (
        8,
        5,
        1,
        1,
    )


def recorded_srun(script: Path, tmp_path: Path, *user_args: str) -> list[str]:
    """Run an sbatch script with a fake ``srun`` (and ``scontrol``); return srun's arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nprintf "%s\\0" "$@" > "$SRUN_ARGS"\n')
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho gpu017\necho gpu018\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    record = tmp_path / "srun_args"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env |= {"SRUN_ARGS": str(record), "SLURM_SUBMIT_DIR": str(REPO), "GPUS_PER_NODE": "4"}
    subprocess.run(["bash", str(script), *user_args], env=env, check=True, timeout=60)
    return record.read_text().split("\0")[:-1]


def test_sbatch_example_runs_ser_fit_with_srun_and_lightning_slurm(slurm_task, tmp_path):
    data = ["-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml")]
    data += ["--data.root", "ShEMO"]
    words = recorded_srun(SCRIPTS / "fit_multinode.sbatch", tmp_path, *data)
    assert words[1:4] == ["-m", "ser", "fit"]
    slurm_task.chdir(REPO)  # the script's config paths are relative to the submit directory
    cli = build_cli([*words[4:], "--trainer.accelerator", "cpu"], run=False)  # no GPU here
    trainer = cli.trainer
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size) == (2, 4, 8)
    assert trainer.precision == "bf16-mixed"
    assert trainer.strategy._ddp_kwargs["find_unused_parameters"]
    assert trainer.default_root_dir == "lightning_logs/ser/slurm-4242"  # hpc checkpoints
    assert trainer.logger.log_dir == trainer.default_root_dir  # a requeued job resumes here
    assert cli.datamodule.loader.num_workers == 7


def test_torchrun_example_starts_one_process_per_gpu(slurm_task, tmp_path):
    words = recorded_srun(SCRIPTS / "fit_torchrun.sbatch", tmp_path, "--data.root", "ShEMO")
    launcher = words[: words.index("ser") + 1]
    assert launcher[1:3] == ["-m", "torch.distributed.run"] and launcher[-2:] == ["-m", "ser"]
    options = dict(zip(launcher[3:-2:2], launcher[4:-2:2], strict=True))
    assert options["--nnodes"] == "2" and options["--nproc-per-node"] == "4"
    assert options["--rdzv-endpoint"] == "gpu017:29500"
    args = words[len(launcher) :]
    assert args[args.index("--trainer.devices") + 1] == options["--nproc-per-node"]
    assert args[args.index("--trainer.num_nodes") + 1] == options["--nnodes"]


def test_cv_array_task_runs_its_fold_of_the_plan(slurm_task, tmp_path, shemo_corpus):
    slurm_task.setenv("SLURM_ARRAY_TASK_ID", "3")
    slurm_task.setenv("CV_DIR", str(tmp_path / "cv"))
    data = ["-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml")]
    data += ["--data.root", str(shemo_corpus), "--data.split", "SpeakerKFold"]
    data += ["--data.split.num_folds", "4"]  # cv lists the folds of the corpus's 4 speakers
    words = recorded_srun(SCRIPTS / "cv_array.sbatch", tmp_path, *data)
    assert words[1:8] == ["-m", "ser", "cv", "--cv_dir", str(tmp_path / "cv"), "--fold_index", "3"]
    slurm_task.chdir(REPO)
    folds = plan_folds(words[8:], None)
    assert [fold.name for fold in folds] == ["fold_0", "fold_1", "fold_2", "fold_3"]
