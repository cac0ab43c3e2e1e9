"""GTSRB data: archives and annotations -> TFDS records -> tf.data pipelines."""
