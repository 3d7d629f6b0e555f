"""ser: speech emotion recognition by fine-tuning pretrained speech transformers."""

__version__ = "0.1.0"
