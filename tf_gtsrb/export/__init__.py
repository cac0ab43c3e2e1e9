"""Export: Keras -> TFLite conversion, integer checks, C arrays, TFLite Micro support, labels.

Modules: tflite (convert, list_ops, check_fully_int8, io_details, save_tflite),
flatbuffer (TensorFlow-free model parsing), c_array, micro, labels.
"""
