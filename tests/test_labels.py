import json

import pytest

from ser.labels import (
    EMOTIONS,
    IEMOCAP_4_CLASSES,
    IEMOCAP_4_MERGE,
    IEMOCAP_CODES,
    SHEMO_CODES,
    LabelSet,
    normalise,
    read_label_map,
)


def test_every_corpus_code_maps_into_the_one_vocabulary():
    for word in [*SHEMO_CODES.values(), *IEMOCAP_CODES.values()]:
        assert word is None or word in EMOTIONS
    assert IEMOCAP_CODES["xxx"] is None  # no agreement: no label


def test_iemocap_four_class_protocol_merges_excitement():
    labels = LabelSet(IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE)
    assert labels.map("excitement") == "happiness"
    assert labels.map("frustration") is None
    assert labels.index("sadness") == 3
    counts = labels.count(["anger", "happiness", "anger"])
    assert counts == {"anger": 2, "happiness": 1, "neutral": 0, "sadness": 0}


@pytest.mark.parametrize(
    ("classes", "merge", "message"),
    [
        (["anger"], {}, "at least two classes"),
        (["anger", "Angry"], {}, "duplicate classes .*after normalising"),
        (["anger", "sadness"], {"excitement": "happiness"}, "merge target 'happiness'"),
    ],
)
def test_bad_label_sets_are_refused(classes, merge, message):
    with pytest.raises(ValueError, match=message):
        LabelSet(tuple(classes), merge)


def test_labels_are_normalised_through_aliases_and_other_words_are_their_own_class():
    assert [normalise(w) for w in ["Angry", " HAPPY", "sad", "fearful", "Surprised"]] == [
        "anger",
        "happiness",
        "sadness",
        "fear",
        "surprise",
    ]
    assert [normalise(w) for w in ["neu", "ang", "hap", "disgusted", "Calm", "boredom"]] == [
        "neutral",
        "anger",
        "happiness",
        "disgust",
        "calm",
        "boredom",
    ]
    labels = LabelSet(("Angry", "calm", "contempt"), merge={"Bored": "Calm"})
    assert labels.classes == ("anger", "calm", "contempt")
    assert [labels.map(w) for w in ["ANGRY", "bored", "Contempt", "joy"]] == [
        "anger",
        "calm",
        "contempt",
        None,
    ]


def test_label_map_comes_first_and_classes_found_keep_a_stable_order(tmp_path):
    path = tmp_path / "label_map.json"  # EmoBox's per-corpus shape: raw label -> class
    path.write_text(json.dumps({"W": "Angry", "L": "Boredom", "T": "Sad"}), encoding="utf-8")
    mapping = read_label_map(str(path))
    labels = LabelSet.of_labels(["L", "T", "W", "W", "neutral"], label_map=mapping)
    assert labels.classes == ("anger", "neutral", "sadness", "boredom")  # common order, then a-z
    assert labels.map("W") == "anger" and labels.map("L") == "boredom"
    merged = LabelSet.of_labels(["L", "T", "W"], merge={"boredom": "sadness"}, label_map=mapping)
    assert merged.classes == ("anger", "sadness")


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object .*raw label -> class")],
)
def test_a_bad_label_map_file_is_named(tmp_path, text, message):
    path = tmp_path / "label_map.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        read_label_map(str(path))
    assert str(path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_label_map(str(tmp_path / "missing.json"))
