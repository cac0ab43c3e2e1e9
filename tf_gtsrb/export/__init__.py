"""Export: Keras -> TFLite conversion, integer checks, C arrays, TFLite Micro support, labels.

Modules: tflite (convert, list_ops, check_fully_int8, io_details, save_tflite),
c_array, micro, labels, metadata, release (the models/ folder and its manifest). Reading and
running model files is in tf_gtsrb.models (flatbuffer, runners).
"""
