"""Using a trained model: ``EmotionRecognizer`` (audio -> emotions), VAD, ONNX."""
