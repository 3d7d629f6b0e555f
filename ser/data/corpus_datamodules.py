"""The datamodules of each corpus: ShEMO, IEMOCAP, MSP-Podcast, RAVDESS, CREMA-D, EmoDB and any
manifest.

A corpus is its scanner (``ser.data.corpora``) plus a few lines here: the arguments that locate
it, its default classes and split; the split strategy and the ``loader`` group are shared.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from ser.data.corpora import cremad, emodb, iemocap, manifest, msppodcast, ravdess, shemo
from ser.data.datamodule import SERDataModule
from ser.data.loader import LoaderSettings
from ser.data.splits import BySession, FromColumn, SpeakerKFold, SplitStrategy, Stratified
from ser.data.utterance import Utterance
from ser.labels import (
    CREMAD_CLASSES,
    EMODB_CLASSES,
    IEMOCAP_4_CLASSES,
    IEMOCAP_4_MERGE,
    MSP_PODCAST_CLASSES,
    RAVDESS_CLASSES,
    SHEMO_CLASSES,
    LabelSet,
    read_label_map,
)


class ShEMODataModule(SERDataModule):
    """ShEMO (Persian): ``root/female/*.wav`` and ``root/male/*.wav``, labels from file names.

    Args:
        root: the folder holding ``female/`` and ``male/`` (or all WAVs flat).
        shemo_json: optional ``shemo.json``; transcripts joined by file stem (never labels).
        classes: emotions used, in class-index order; the rest are left out.
        split: how to split (``ser.data.splits``); the paper's stratified random 80/10/10.
        loader: batch size, workers, crop lengths, cache folder and seed.
        soft_labels: train on the raters' vote distribution; this corpus has no votes, so
            true stops with an error (``SERDataModule``).
    """

    def __init__(
        self,
        root: str,
        shemo_json: str | None = None,
        classes: Sequence[str] = SHEMO_CLASSES,
        split: SplitStrategy = Stratified(),
        loader: LoaderSettings = LoaderSettings(),
        soft_labels: bool = False,
    ) -> None:
        super().__init__(LabelSet(tuple(classes)), split, loader, soft_labels=soft_labels)
        self.root = root
        self.shemo_json = shemo_json

    def scan(self) -> list[Utterance]:
        return shemo.scan(self.root, self.shemo_json)


class IEMOCAPDataModule(SERDataModule):
    """IEMOCAP (English), ``Session1..5``; by default the standard 4-class protocol.

    Args:
        root: the folder holding ``Session1`` ... ``Session5``.
        classes: emotions used, in class-index order (default: anger, happiness, neutral, sadness).
        merge: emotion -> class it counts as (default: excitement counts as happiness).
        split: how to split; default leave-one-session-out with ``Session5`` held out.
        loader: batch size, workers, crop lengths, cache folder and seed.
        dimensions: the ratings to regress, of ``valence``, ``arousal``, ``dominance`` (each
            label line's evaluator means, 1-5); none by default.
        soft_labels: train on the distribution of the external evaluators' votes (soft
            cross-entropy); val/test metrics stay on the label (``docs/corpora.md``).
    """

    def __init__(
        self,
        root: str,
        classes: Sequence[str] = IEMOCAP_4_CLASSES,
        merge: Mapping[str, str] = IEMOCAP_4_MERGE,
        split: SplitStrategy = BySession(),
        loader: LoaderSettings = LoaderSettings(),
        dimensions: Sequence[str] = (),
        soft_labels: bool = False,
    ) -> None:
        labels = LabelSet(tuple(classes), merge)
        super().__init__(labels, split, loader, dimensions, soft_labels)
        self.root = root

    def scan(self) -> list[Utterance]:
        return iemocap.scan(self.root)


class MSPPodcastDataModule(SERDataModule):
    """MSP-Podcast: ``root/Audios/*.wav`` and ``root/Labels/labels_consensus.csv``; both tasks.

    Args:
        root: the folder holding ``Audios/`` and ``Labels/``.
        classes: emotions used, in class-index order (default: the 8 consensus classes of the
            Odyssey 2024 challenge; rows without agreement or of class other are left out).
        merge: emotion -> class it counts as.
        test_set: the ``Split_Set`` that is the test part (Test1; Test2 for its other speakers).
        split: how to split; default the official partition (Train, Development, ``test_set``).
        loader: batch size, workers, crop lengths, cache folder and seed.
        dimensions: the ratings to regress, of ``arousal``, ``valence``, ``dominance`` (1-7);
            none by default.
        soft_labels: train on the raters' vote distribution; the reader does not read
            ``labels_detailed.csv`` yet, so true stops with an error (``SERDataModule``).
    """

    def __init__(
        self,
        root: str,
        classes: Sequence[str] = MSP_PODCAST_CLASSES,
        merge: Mapping[str, str] | None = None,
        test_set: str = "Test1",
        split: SplitStrategy = FromColumn(),
        loader: LoaderSettings = LoaderSettings(),
        dimensions: Sequence[str] = (),
        soft_labels: bool = False,
    ) -> None:
        labels = LabelSet(tuple(classes), merge or {})
        super().__init__(labels, split, loader, dimensions, soft_labels)
        self.root = root
        self.test_set = test_set

    def scan(self) -> list[Utterance]:
        return msppodcast.scan(self.root, self.test_set)


class ManifestDataModule(SERDataModule):
    """Any corpus listed in a CSV or JSONL manifest (path, label, optional speaker and split).

    Labels may be any words: they are lower-cased and normalised (``Angry`` -> ``anger``), and
    words outside the common vocabulary (``calm``, ``contempt``) are classes of their own.

    Args:
        path: the manifest file (.csv or .jsonl); relative audio paths are relative to it.
        classes: classes used, in class-index order; None uses every class the labels become
            (common vocabulary order first, then alphabetical).
        merge: label -> class it counts as (e.g. ``{calm: neutral}``).
        label_map: raw label -> class, applied first: a dict, or a JSON file of one (EmoBox's
            ``label_map.json``: ``{"ANG": "Angry", ...}``).
        split: how to split; default the manifest's own split column, as is.
        loader: batch size, workers, crop lengths, cache folder and seed.
        dimensions: numeric columns to regress (e.g. ``[arousal, valence]``, any names and
            scale); every row must hold a number in each.
        soft_labels: train on the raters' vote distribution; a manifest has no votes, so
            true stops with an error (``SERDataModule``).
    """

    def __init__(
        self,
        path: str,
        classes: Sequence[str] | None = None,
        merge: Mapping[str, str] | None = None,
        label_map: Mapping[str, str] | str | None = None,
        split: SplitStrategy = FromColumn(),
        loader: LoaderSettings = LoaderSettings(),
        dimensions: Sequence[str] = (),
        soft_labels: bool = False,
    ) -> None:
        self.path = path
        self.dimensions = list(dimensions)  # scan() reads them
        mapping = read_label_map(label_map)
        if classes is None:
            # The class list must exist before the model is built (it sizes the head), so the
            # manifest is read here.
            labels = LabelSet.of_labels((row.label for row in self.corpus_rows), merge, mapping)
        else:
            labels = LabelSet(tuple(classes), merge or {}, mapping)
        super().__init__(labels, split, loader, dimensions, soft_labels)

    def scan(self) -> list[Utterance]:
        return manifest.scan(self.path, self.dimensions)


class NamedCorpusDataModule(SERDataModule):
    """A corpus whose file names carry speaker and emotion, scanned from ``root``.

    A subclass is one corpus, declared by keywords: ``scanner``, and the defaults of ``classes``
    and ``split``. They become the subclass' signature defaults, so ``--help``, ``--print_config``
    and ``--data.split.fold 3`` show and use that corpus' defaults.

    Args:
        root: the corpus folder (what it holds is in each subclass' docstring).
        classes: classes used, in class-index order (default: all of the corpus' emotions).
        merge: emotion -> class it counts as (e.g. ``{calm: neutral}``).
        split: how to split (default: the corpus' usual speaker-independent protocol).
        loader: batch size, workers, crop lengths, cache folder and seed.
        soft_labels: train on the raters' vote distribution; this corpus has no votes, so
            true stops with an error (``SERDataModule``).
    """

    scanner: ClassVar[Callable[[str], list[Utterance]]]

    def __init__(
        self,
        root: str,
        classes: Sequence[str] = (),
        merge: Mapping[str, str] | None = None,
        split: SplitStrategy = SpeakerKFold(),
        loader: LoaderSettings = LoaderSettings(),
        soft_labels: bool = False,
    ) -> None:
        labels = LabelSet(tuple(classes), merge or {})
        super().__init__(labels, split, loader, soft_labels=soft_labels)
        self.root = root

    def __init_subclass__(
        cls,
        scanner: Callable[[str], list[Utterance]],
        classes: Sequence[str],
        split: SplitStrategy,
    ) -> None:
        super().__init_subclass__()
        cls.scanner = staticmethod(scanner)
        # eval_str: real types, not the strings of `from __future__ import annotations`.
        shared = inspect.signature(NamedCorpusDataModule.__init__, eval_str=True)
        defaults = {"classes": tuple(classes), "split": split}
        parameters = [
            p.replace(default=defaults.get(p.name, p.default)) for p in shared.parameters.values()
        ]

        def __init__(self: NamedCorpusDataModule, *args: Any, **kwargs: Any) -> None:
            NamedCorpusDataModule.__init__(self, *args, **{**defaults, **kwargs})

        # jsonargparse reads the signature (the config schema) and the Args of the docstring.
        __init__.__signature__ = shared.replace(parameters=parameters)
        __init__.__doc__ = NamedCorpusDataModule.__doc__
        cls.__init__ = __init__

    def scan(self) -> list[Utterance]:
        return type(self).scanner(self.root)


class RAVDESSDataModule(
    NamedCorpusDataModule, scanner=ravdess.scan, classes=RAVDESS_CLASSES, split=SpeakerKFold()
):
    """RAVDESS speech: ``root/Actor_01/03-01-05-01-02-01-01.wav``; 8 emotions, 24 actors.

    ``root`` holds ``Actor_01`` ... ``Actor_24``; default classes all 8 (calm included), default
    split speaker 5-fold (fold 0 tests on about 5 actors).
    """


class CREMADDataModule(
    NamedCorpusDataModule, scanner=cremad.scan, classes=CREMAD_CLASSES, split=SpeakerKFold()
):
    """CREMA-D: ``root/AudioWAV/1001_DFA_ANG_XX.wav``; 6 emotions, 91 actors.

    ``root`` holds ``AudioWAV/``; default classes all 6, default split speaker 5-fold.
    """


class EmoDBDataModule(
    NamedCorpusDataModule,
    scanner=emodb.scan,
    classes=EMODB_CLASSES,
    split=SpeakerKFold(num_folds=10),
):
    """EmoDB (Berlin): ``root/wav/03a01Fa.wav``; 7 emotions (boredom included), 10 speakers.

    ``root`` holds ``wav/``; default classes all 7, default split leave-one-speaker-out (10 folds:
    one speaker each).
    """
