"""ser: speech emotion recognition by fine-tuning pretrained speech transformers.

``from ser import EmotionRecognizer`` loads ``ser.inference.recognizer`` on first use, so
``import ser`` stays cheap (no Lightning, no transformers until a model is built).
"""

__version__ = "0.1.0"
__all__ = ["EmotionRecognizer"]


def __getattr__(name: str):
    if name == "EmotionRecognizer":
        from ser.inference.recognizer import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
