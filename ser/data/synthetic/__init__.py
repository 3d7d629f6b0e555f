"""Synthetic speech corpora in the real ShEMO / IEMOCAP layouts, for tests and the demo.

``python -m ser synth --layout shemo --out demo_data/shemo`` writes one
(``ser.commands.synth``). The voice model is in ``voice.py``, the layouts in ``corpus.py``.
"""

from __future__ import annotations

from ser.data.synthetic.corpus import write_corpus

__all__ = ["write_corpus"]
