"""Regional torch.compile in training: a new batch length or SpecAugment mask recompiles nothing.

Recompilation is decided by dynamo's guards, whatever the backend: the layers are compiled here
with a backend that records each graph and runs it as traced (seconds instead of inductor's
minutes on a CPU); the outputs and gradients of inductor's code are checked by the slow test in
test_models_backbones.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from models_tiny import TINY

from ser.models import HFBackbone

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def recompile_counter():
    spec = importlib.util.spec_from_file_location("device_timing", BENCHMARKS / "device_timing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RecompileCounter()


@pytest.mark.parametrize("name", ["wav2vec2-group", "wav2vec2-layer", "ast", "whisper"])
def test_training_steps_of_new_lengths_recompile_nothing(monkeypatch, name):
    graphs = []

    def recording(graph: torch.fx.GraphModule, example_inputs) -> object:
        graphs.append(graph)
        return graph.forward

    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module, "compile", lambda self, **kw: compile_module(self, backend=recording, **kw)
    )
    torch.compiler.reset()
    model_type, config = TINY[name]
    # SpecAugment and LayerDrop on, as in the wav2vec2-family checkpoints' training.
    config = {**config, "mask_time_prob": 0.3, "layerdrop": 0.1}
    backbone = HFBackbone(model_type=model_type, config=config, freeze="none", compile=True)
    backbone.train()
    with recompile_counter() as counter:
        for samples in (8000, 9000, 12000, 7000, 16000):  # length-grouped batches: every one new
            waves = 0.1 * torch.randn(3, samples)  # (B, T)
            lengths = torch.tensor([samples, samples - 1000, samples - 3000])  # (B,)
            states, _ = backbone(waves, lengths)
            sum(state.sum() for state in states).backward()
    assert graphs, "no layer was compiled"
    assert not counter.reasons, counter.reasons
