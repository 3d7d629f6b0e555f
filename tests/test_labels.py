import pytest

from ser.labels import (
    EMOTIONS,
    IEMOCAP_4_CLASSES,
    IEMOCAP_4_MERGE,
    IEMOCAP_CODES,
    SHEMO_CODES,
    LabelSet,
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
        (["anger", "joy"], {}, "unknown emotion 'joy'"),
        (["anger"], {}, "at least two classes"),
        (["anger", "anger"], {}, "duplicate"),
        (["anger", "sadness"], {"excitement": "happiness"}, "merge target 'happiness'"),
    ],
)
def test_bad_label_sets_are_refused(classes, merge, message):
    with pytest.raises(ValueError, match=message):
        LabelSet(tuple(classes), merge)
