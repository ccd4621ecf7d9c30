"""The resynth generator's learned scorer: which bar of a song comes next, trained contrastively on the corpus's
segmented songs, and exported to ONNX with the resynth contract."""
