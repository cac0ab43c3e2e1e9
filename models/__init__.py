"""The released models, installed as the package `tf_gtsrb_models` (package data only).

This directory is the single copy: setup.cfg maps the package to models/, so
`pip install .` ships the .tflite files, labels.txt, the C array and the report.
"""
