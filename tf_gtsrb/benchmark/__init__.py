"""Benchmark: run Keras and TFLite models alike; latency, throughput, memory, comparisons.

Modules (the models themselves run through tf_gtsrb.models.runners): latency, compare, memory
(subprocess entry point of the peak-memory measurement), run (one benchmark run), runtimes
(TFLite Micro, reference kernels, MediaPipe), vela (Ethos-U NPUs), input_speed (is the
input pipeline the training bottleneck?).
"""
