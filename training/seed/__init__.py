"""The 2023 paper's model ("seed"): a dense encoder-decoder on raw waveform, its tf.data pipeline over audio
folders or TFRecord shards, training under tf.distribute, its report, and export to ONNX."""
