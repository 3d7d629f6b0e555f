"""What ``python -m ser`` prints: one line for a user error (``--debug`` for the traceback), the
light subcommands without Lightning, and the cache administration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from corpus_fixtures import tiny_wav
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

import ser.commands.cli  # noqa: F401  Lightning's log handler binds stderr at import: before capsys
from ser.commands import cache, console
from ser.data.cache import AudioCache, tmp_suffix
from ser.data.utterance import Utterance
from ser.features import FeatureStore

REPO = Path(__file__).parents[1]
DEMO = ["-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml")]


def fit(tmp_path: Path, *args: str) -> list[str]:
    return ["fit", *DEMO, "--trainer.default_root_dir", str(tmp_path / "runs"), *args]


def user_error(argv: list[str], capsys) -> str:
    """Run ``main(argv)``; it must exit with status 1 and print one error line, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        console.main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


def test_missing_corpus_root_is_one_line(tmp_path, capsys):
    line = user_error(fit(tmp_path, "--data.root", str(tmp_path / "nowhere")), capsys)
    assert f"ShEMO root {tmp_path / 'nowhere'} does not exist" in line


def test_a_fit_that_fails_before_writing_anything_leaves_no_run_directory(tmp_path, capsys):
    (tmp_path / "runs" / "demo" / "version_0").mkdir(parents=True)  # an earlier run's: kept
    user_error(fit(tmp_path, "--data.root", str(tmp_path / "nowhere")), capsys)
    manifest = ["-c", str(REPO / "configs/data/manifest.yaml"), "--data.path", "no.csv"]
    user_error(["fit", "-c", str(REPO / "configs/demo.yaml"), *manifest,
                "--trainer.default_root_dir", str(tmp_path / "runs")], capsys)  # fmt: skip
    # Found wrong once the logger has opened its event file: a class without training rows.
    rows = [("anger", "train"), ("anger", "val"), ("fear", "val"), ("fear", "test")]
    lines = ["path,label,split"]
    for number, (label, split) in enumerate(rows):
        lines.append(f"{tiny_wav(tmp_path / f'clip{number}.wav', seconds=1.0)},{label},{split}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    manifest = [
        "-c",
        str(REPO / "configs/data/manifest.yaml"),
        "--data.path",
        str(tmp_path / "m.csv"),
    ]
    line = user_error(["fit", "-c", str(REPO / "configs/demo.yaml"), *manifest,
                       "--data.loader.cache_dir", str(tmp_path / "cache"),
                       "--trainer.default_root_dir", str(tmp_path / "runs")], capsys)  # fmt: skip
    assert "['fear'] have no row in the train part" in line
    assert [p.name for p in (tmp_path / "runs" / "demo").iterdir()] == ["version_0"]


def test_bad_file_name_in_a_shemo_folder_is_one_line(tmp_path, capsys):
    tiny_wav(tmp_path / "ShEMO" / "female" / "recording 1.wav")
    line = user_error(fit(tmp_path, "--data.root", str(tmp_path / "ShEMO")), capsys)
    assert "recording 1.wav: file name does not follow the ShEMO naming" in line


def test_bad_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"not a checkpoint")
    line = user_error(["test", "--ckpt_path", str(bad)], capsys)
    assert f"--ckpt_path {bad}: not a readable checkpoint" in line
    assert "Weights only load failed" not in line  # torch's paragraph only with --debug
    # fit resuming from it: one line too, before Lightning reads the file itself
    line = user_error(fit(tmp_path, "--ckpt_path", str(bad)), capsys)
    assert f"--ckpt_path {bad}: not a readable checkpoint" in line


def test_a_backbone_source_that_cannot_load_is_one_line(tmp_path, capsys, monkeypatch):
    for name in ("F01A01.wav", "F01N01.wav"):
        tiny_wav(tmp_path / "ShEMO" / "female" / name)
    source = ["--data.root", str(tmp_path / "ShEMO"), "--data.classes", "[anger, neutral]"]
    source += ["--model.backbone.init_args.model_type", "null"]
    missing = tmp_path / "weights" / "whisper-base"  # a mistyped folder, not a malformed hub id
    line = user_error(fit(tmp_path, *source, "--model.backbone.init_args.source", str(missing)),
                      capsys)  # fmt: skip
    assert f"HFBackbone source '{missing}': no such folder" in line
    # A hub id without network (offline mode stands in for a cluster node without internet):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    hub = ["--model.backbone.init_args.source", "facebook/wav2vec2-base"]
    line = user_error(fit(tmp_path, *source, *hub), capsys)
    assert "'facebook/wav2vec2-base' is no local folder and could not be loaded" in line
    assert "hf download ID --local-dir DIR" in line


def test_unwritable_cache_is_one_line_naming_the_option(tmp_path, capsys):
    for name in ("F01A01.wav", "F01N01.wav"):
        tiny_wav(tmp_path / "ShEMO" / "female" / name)
    (tmp_path / "blocker").write_text("")
    blocker = str(tmp_path / "blocker")
    args = ["--data.root", str(tmp_path / "ShEMO"), "--data.classes", "[anger, neutral]"]
    args += ["--data.loader.cache_dir", blocker]
    line = user_error(fit(tmp_path, *args), capsys)
    assert "cannot write the audio cache" in line and "set --data.loader.cache_dir" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fit", "--bogus", "1"], "error: unrecognized arguments: --bogus 1"),
        (
            ["fit", "--trainer.max_epochs", "abc"],
            "error: --trainer.max_epochs: expected int or null; given abc",
        ),
        (["fit", "-c", "no_such.yaml"], "error: --config: File does not exist"),
        (["predict", "--ckpt_path", "m.ckpt", "--bogus", "1"], "error: "),
        (["synth", "--layout", "shemo"], "error: the following arguments are required: --out"),
        (["cache", "tidy"], "error: argument action: invalid choice: 'tidy'"),
        (["cv-summary"], "error: the following arguments are required: cv_dir"),
        (["compare", "a"], "error: the following arguments are required: b"),
        (["export", "--bogus", "1"], "error: the following arguments are required: --ckpt_path"),
        (["cv", "--fold_index", "x"], "error: argument --fold_index: invalid int value: 'x'"),
        (
            ["fit", *DEMO],  # no --data.root: was 10 lines of union types and a dump of values
            "error: the following arguments are required: --data.root (of --data's class "
            "ser.data.ShEMODataModule)",
        ),
        (
            ["cv", "--cv_dir", "unused", *DEMO],
            "error: the following arguments are required: --data.root",
        ),
        (  # a misspelt option of the data's class: was 9 lines of union types and values
            ["fit", *DEMO, "--data.root", "x", "--data.loader.batchsize", "4"],
            "error: unrecognized arguments: --data.loader.batchsize (of --data's class "
            "ser.data.ShEMODataModule)",
        ),
        (
            ["fit", *DEMO, "--data.root", "x", "--data.loader.batch_size", "abc"],
            "error: --data.loader.batch_size: expected int; given abc",
        ),
        (
            ["fit", *DEMO, "--data.root", "x", "--data.split", "Stratifed"],
            "error: --data.split: Expected a path but Stratifed either not accessible or "
            "invalid; Expected a dot import path string: Stratifed",
        ),
        (
            ["fit", *DEMO[2:], "--data.root", "x"],  # no model config: was named fit.model.backbone
            "error: the following arguments are required: --model.backbone",
        ),
    ],
    ids=[
        "unknown-option",
        "wrong-type",
        "missing-config",
        "predict-unknown-option",
        "synth-missing-option",
        "cache-bad-action",
        "cv-summary-no-directory",
        "compare-one-directory",
        "export-no-checkpoint",
        "cv-bad-int",
        "fit-no-corpus-root",
        "cv-no-corpus-root",
        "data-unknown-option",
        "data-wrong-type",
        "data-unknown-class",
        "fit-no-model",
    ],
)
def test_a_bad_option_is_the_error_first_then_a_short_hint(argv, expected, capsys):
    """Not ~60 lines of usage before the line that matters: the error, then where to look."""
    with pytest.raises(SystemExit) as exit_info:
        console.main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(expected), lines[:3]
    assert not any(line.startswith("usage:") for line in lines)
    assert lines[-1] == f"(python -m ser {argv[0]} --help lists the options)"
    assert len(lines) == 2, lines  # the error, the hint


def test_a_file_name_in_a_parse_error_is_left_as_it_is(tmp_path, capsys):
    """Only the keys LightningCLI names by subcommand (``fit.model.x``) become options: a file
    ``test.yaml`` once read as ``--yaml``."""
    missing = str(tmp_path / "test.yaml")
    with pytest.raises(SystemExit):
        console.main(["fit", "-c", missing])
    assert f"error: --config: File does not exist: '{missing}'" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        console.main(["--debug", *fit(tmp_path, "--data.root", str(tmp_path / "nowhere"))])


def test_errors_raised_inside_libraries_keep_their_traceback():
    try:
        json.loads("{")
    except ValueError as err:
        assert not console.is_user_error(err)
    try:
        raise ValueError("a message of ours")
    except ValueError as err:
        assert not console.is_user_error(err)  # a test file is not ser's code
    with pytest.raises(ValueError) as caught:
        AudioCache.build([], Path("unused"), on_bad_file="bad")  # type: ignore[arg-type]
    assert console.is_user_error(caught.value)
    # Trainer settings that do not go together, in Lightning's words.
    with pytest.raises(MisconfigurationException) as caught:
        Trainer(enable_checkpointing=False, callbacks=[ModelCheckpoint()])
    assert console.is_user_error(caught.value)


PROBE = (
    "import sys; from ser.commands.console import main; main(sys.argv[1:]); "
    "heavy = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'transformers')]; "
    "assert not heavy, heavy[:5]"
)


@pytest.mark.parametrize(
    "args",
    [["--help"], ["synth", "--layout", "shemo", "--speakers", "2", "--per-speaker", "1"]],
    ids=["help", "synth"],
)
def test_help_and_synth_do_not_import_lightning_or_transformers(args, tmp_path):
    out = ["--out", str(tmp_path / "ShEMO")] if args[0] == "synth" else []
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args, *out],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if args[0] == "--help":
        assert "fit " in result.stdout and "cache " in result.stdout


def _rows(tmp_path: Path) -> list[Utterance]:
    path = tiny_wav(tmp_path / "F01A01.wav", seconds=0.5)
    return [Utterance("F01A01", str(path), "F01", "anger", 0.5, 16_000)]


def test_cache_list_and_clean(tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    used = AudioCache.build(_rows(tmp_path), cache_dir).directory
    store = FeatureStore.build(
        used / "features", "ab" * 32, "frames", [(["F01A01"], [np.ones((64, 2, 1024))], [20_480])]
    )  # 256 KiB of float16, inside the cache it was computed from
    old_cache = cache_dir / "0123456789abcdef"
    old_cache.mkdir()
    (old_cache / "meta.json").write_text(json.dumps({"num_utterances": 3}))
    stalled = cache_dir / f"{'f' * 64}{tmp_suffix('otherhost', 7)}"
    stalled.mkdir()
    # Folders ser did not write (a --cache_dir pointing at a corpus or results by mistake):
    # never listed as caches, never removed, even with --all.
    foreign = [
        cache_dir / "female",
        cache_dir / "results",
        cache_dir / "0123456789abcdeg",
        cache_dir / "thesis.tmp-2024-05",
    ]  # not a key: removed as a dead build before
    for folder in foreign:
        folder.mkdir()
        (folder / "F01A01.wav").write_bytes(b"RIFF")
    week_ago = time.time() - 7 * 86400
    for folder in (old_cache, stalled, *foreign):
        for path in (*folder.iterdir(), folder):
            os.utime(path, (week_ago, week_ago))

    cache.main(["list", "--cache_dir", str(cache_dir)])
    listing = capsys.readouterr().out
    assert "3 folders" in listing
    assert "1 utterances" in listing and "unfinished build of otherhost pid 7" in listing
    assert "1 feature stores (0.3 MiB)" in listing  # counted in the cache's size too
    (used_line,) = [line for line in listing.splitlines() if used.name in line]
    assert float(used_line.split()[1]) >= store.size_bytes / 2**20

    assert "left alone: 4 folders ser did not write (0123456789abcdeg, female, results, " in listing

    cache.main(["clean", "--cache_dir", str(cache_dir), "--older_than", "1", "--dry_run"])
    assert len(list(cache_dir.iterdir())) == 7
    cache.main(["clean", "--cache_dir", str(cache_dir), "--older_than", "1"])
    assert sorted(cache_dir.iterdir()) == sorted([used, *foreign])  # used today: kept
    cache.main(["clean", "--cache_dir", str(cache_dir), "--all"])
    assert sorted(cache_dir.iterdir()) == sorted(foreign)
    assert all((folder / "F01A01.wav").is_file() for folder in foreign)


def test_noise_nobody_can_act_on_is_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", DeprecationWarning)  # Python's default outside __main__
        console.setup_console()
        noise = [
            "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`",
            '`.test(ckpt_path="best")` is called with Trainer configured with multiple '
            "`ModelCheckpoint` callbacks. It will use the best checkpoint path from first one.",
        ]
        for message in [*noise, "The number of training batches (3) is smaller than ..."]:
            warnings.warn(message, UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "The number of training batches (3) is smaller than ..."
    ]


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("model:\n  head_lrr: 0.1\n", "error: --model.head_lrr: no such option"),
        (
            "data:\n  init_args:\n    loader:\n      batchsize: 3\n",
            "error: --data.loader.batchsize: no such option (of --data's class "
            "ser.data.ShEMODataModule)",
        ),
        (
            "model:\n  backbone:\n    init_args:\n      freezee: all\n",
            "error: --model.backbone.freezee: no such option (of --model.backbone's class "
            "ser.models.HFBackbone)",
        ),
        ("trainer:\n  max_epochs: abc\n", "error: --trainer.max_epochs: expected int or null"),
    ],
    ids=["subcommand", "data-group", "backbone", "wrong-type"],
)
def test_a_config_file_mistake_is_one_line_naming_the_file(yaml_text, expected, tmp_path, capsys):
    """A misspelt key in a YAML config was jsonargparse's 9 lines (or a line naming no file)."""
    config = tmp_path / "mine.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SystemExit) as exit_info:
        console.main(["fit", *DEMO, "-c", str(config), "--data.root", "x"])
    assert exit_info.value.code == 2
    first, hint = capsys.readouterr().err.splitlines()
    assert first.startswith(expected) and first.endswith(f" (set in {config})"), first
    assert hint == "(python -m ser fit --help lists the options)"


HOLD_A_BUILD = """
import sys, time
from pathlib import Path
from ser.data.cache import start_build
lock = start_build(Path(sys.argv[1]))
print("building", flush=True)
time.sleep(120)
"""


def test_a_running_build_is_never_removed_and_a_killed_one_is(tmp_path, capsys):
    """Liveness comes from the build's lock, not its pid: a build of this host name whose pid is
    not seen (another PID namespace, a container) was taken for killed and removed, by the next
    build and by ``clean --all``, under the running process. A feature store's unfinished build
    inside a cache is listed and cleaned as the cache's own are."""
    cache_dir = tmp_path / "cache"
    used = AudioCache.build(_rows(tmp_path), cache_dir).directory
    unseen_pid = cache_dir / f"{'e' * 64}{tmp_suffix(pid=2**22 + 1)}"  # above pid_max
    store_build = used / "features" / f"{'d' * 64}{tmp_suffix(pid=2**22 + 2)}"
    store_build.parent.mkdir()
    builders = [
        subprocess.Popen([sys.executable, "-c", HOLD_A_BUILD, str(folder)], stdout=subprocess.PIPE,
                         text=True, cwd=REPO)
        for folder in (unseen_pid, store_build)
    ]  # fmt: skip
    try:
        assert [builder.stdout.readline() for builder in builders] == ["building\n"] * 2
        other = tiny_wav(tmp_path / "F01A02.wav", seconds=0.5)  # a build in the same folder
        AudioCache.build([Utterance("F01A02", str(other), "F01", "anger", 0.5, 16_000)], cache_dir)
        cache.main(["list", "--cache_dir", str(cache_dir)])
        listing = capsys.readouterr().out
        assert "unfinished build of" in listing and "unfinished feature store of" in listing
        assert listing.count("(running)") == 2
        cache.main(["clean", "--cache_dir", str(cache_dir), "--all"])
        assert unseen_pid.is_dir() and store_build.is_dir()  # and the cache it is built from
        cache.main(["clean", "--cache_dir", str(cache_dir)])
        assert unseen_pid.is_dir() and store_build.is_dir()
    finally:
        for builder in builders:
            builder.kill()
            builder.wait()
    cache.main(["list", "--cache_dir", str(cache_dir)])
    assert capsys.readouterr().out.count("(killed)") == 2
    cache.main(["clean", "--cache_dir", str(cache_dir)])  # killed: removed at once
    assert not unseen_pid.exists() and not store_build.exists() and used.is_dir()


def test_clean_says_what_it_could_not_remove(tmp_path, monkeypatch, caplog):
    cache_dir = tmp_path / "cache"
    used = AudioCache.build(_rows(tmp_path), cache_dir).directory

    def read_only(path, onerror):
        onerror(os.rmdir, str(path), (OSError, OSError(30, "Read-only file system"), None))

    monkeypatch.setattr(cache.shutil, "rmtree", read_only)
    with pytest.raises(SystemExit) as stopped, caplog.at_level("INFO"):
        cache.main(["clean", "--cache_dir", str(cache_dir), "--all"])
    assert stopped.value.code == 1 and used.is_dir()
    assert f"could not remove {used}: {used}: [Errno 30] Read-only file system" in caplog.text
    assert "0 of 1 folders, freed 0.0 MiB" in caplog.text
