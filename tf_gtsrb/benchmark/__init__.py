"""Benchmark: run Keras and TFLite models alike; latency, throughput, memory, comparisons.

Modules: runners (TFLiteRunner, KerasRunner), latency, compare, memory
(subprocess entry point of the peak-memory measurement).
"""
