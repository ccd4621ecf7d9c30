"""Encore training: Keras models, a tf.data pipeline over audio folders, training, reports and ONNX export.

Heavy imports (TensorFlow, Keras, tf2onnx) live inside the submodules that need them, so ``training --help``
answers at once. The engine never imports this package: it only loads the ONNX files written here.
"""

__all__: list[str] = []
