"""Quantization-aware training (QAT) with tfmot's default 8-bit scheme.

`quantize_aware` wraps a float model in fake-quantization so that fine-tuning
learns weights that survive full-INT8 conversion. Layer support (tfmot 0.8.1,
checked on TrafficSignCNN): every layer is covered by the default registry and
needs no custom QuantizeConfig:

- Conv2D -> BatchNormalization -> ReLU is matched as one block: no fake-quant
  between the three, weights quantized per output channel, the ReLU output
  quantized. QAT trains the unfolded BatchNorm; the TFLite converter folds it
  into the convolution (a Conv2D without bias is fine).
- MaxPooling2D and Dropout pass their input's quantization through;
  GlobalAveragePooling2D, Dense (per-tensor weights) and Softmax quantize their
  outputs; the model input gets a QuantizeLayer.

Collaborative optimization (tfmot.experimental.combine):
- `preserve_sparsity=True` (PQAT) multiplies each Conv2D/Dense kernel by the
  zero mask it had when QAT started, so zeros from magnitude pruning stay zero
  (the mask is a constant taken from the weights, not a variable).
- `preserve_clusters=True` (CQAT, PCQAT with preserve_sparsity) trains the
  cluster centroids of a clustered model instead of its weights. tfmot treats a
  Conv2D kernel whose output channels each hold (nearly) the same number of
  distinct values as clustered per channel, so a per-tensor clustered kernel
  may leave CQAT with up to N distinct values per output channel.

Saving and loading QAT models: `tf_gtsrb.models.tfmot_files`.
"""

import os

import tensorflow_model_optimization as tfmot

from tf_gtsrb.compression import clustering
from tf_gtsrb.compression import magnitude_pruning
from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import distill

quantization = tfmot.quantization.keras


def quantize_aware(model, preserve_sparsity=False, preserve_clusters=False):
  """Returns a QAT copy of float `model` (fake-quantized INT8 weights and activations).

  `preserve_sparsity` keeps the zero weights zero (PQAT; for pruned models);
  `preserve_clusters` keeps the weight clusters (CQAT; for clustered, stripped
  models). The input model is not changed; the result is uncompiled.
  """
  magnitude_pruning.check_float_model(model, "quantize")
  base = magnitude_pruning.copy_model(model)
  if not preserve_sparsity and not preserve_clusters:
    return quantization.quantize_model(base)
  if preserve_clusters:
    scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
        preserve_sparsity=bool(preserve_sparsity))
  else:
    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
  return quantization.quantize_apply(quantization.quantize_annotate_model(base), scheme)


def qat_fine_tune(model, train_ds, val_ds, epochs, learning_rate=1e-5, preserve_sparsity=None,
                  preserve_clusters=False, steps_per_epoch=None, callbacks=(), verbose=2,
                  teacher=None, distill_temperature=distill.DEFAULT_TEMPERATURE,
                  distill_alpha=distill.DEFAULT_ALPHA, distill_mixup=distill.DEFAULT_MIXUP,
                  distill_both_views=False, label_smoothing=compile_lib.DEFAULT_LABEL_SMOOTHING):
  """Makes float `model` quantization-aware and fine-tunes it; returns the QAT model.

  `preserve_sparsity=None` preserves sparsity when the model is at least
  magnitude_pruning.SPARSE_THRESHOLD sparse. `steps_per_epoch` is needed for endless
  datasets. With a `teacher`, fine-tuning distils from it (`compile.fine_tune`).
  """
  epochs = magnitude_pruning.check_positive_int(epochs, "epochs")
  magnitude_pruning.check_float_model(model, "quantize")
  if steps_per_epoch is None:
    magnitude_pruning.steps_per_epoch_of(train_ds)
  if preserve_sparsity is None:
    preserve_sparsity = magnitude_pruning.is_sparse(model)
  qat_model = quantize_aware(model, preserve_sparsity, preserve_clusters)
  compile_lib.fine_tune(qat_model, train_ds, val_ds, epochs, learning_rate, callbacks=callbacks,
                        label_smoothing=label_smoothing, steps_per_epoch=steps_per_epoch,
                        verbose=verbose, teacher=teacher,
                        distill_temperature=distill_temperature, distill_alpha=distill_alpha,
                        distill_mixup=distill_mixup, distill_both_views=distill_both_views)
  return qat_model


def run_qat(model, train_ds, val_ds, epochs, learning_rate, steps_per_epoch,
            preserve_sparsity=None, clusters=0, preserve_clusters=False, log_dir=None,
            verbose=2, **fine_tune_kwargs):
  """The QAT step: with `clusters`, first clusters every kernel to that many values and
  fine-tunes them (`clustering.cluster_and_fine_tune`, same epochs and rate); then
  quantization-aware training (`qat_fine_tune`), keeping the zeros (`preserve_sparsity`;
  None: when the model is at least magnitude_pruning.SPARSE_THRESHOLD sparse) and the
  clusters (given `clusters`, or `preserve_clusters` for a model clustered before).

  `learning_rate` is a rate or a schedule; `fine_tune_kwargs` (label_smoothing, teacher,
  distill_*) go to every fine-tuning epoch; with `log_dir`, TensorBoard logs go to its
  `cluster` and `fit` subdirectories. Returns (QAT model, record): what was preserved,
  kernel sparsity in and out, distinct values per kernel (clustered models) and
  "val_accuracy" after the last epoch (None without `val_ds`).
  """
  def logs(phase):
    return compile_lib.training_logs(os.path.join(log_dir, phase)) if log_dir else ()

  magnitude_pruning.check_float_model(model, "quantize")
  input_sparsity = magnitude_pruning.sparsity_report(model)["sparsity"]
  if preserve_sparsity is None:
    preserve_sparsity = input_sparsity >= magnitude_pruning.SPARSE_THRESHOLD
  if clusters:
    model = clustering.cluster_and_fine_tune(
        model, train_ds, val_ds, number_of_clusters=clusters, epochs=epochs,
        learning_rate=learning_rate, preserve_sparsity=preserve_sparsity,
        steps_per_epoch=steps_per_epoch, verbose=verbose, callbacks=logs("cluster"),
        **fine_tune_kwargs)
  preserve_clusters = bool(clusters or preserve_clusters)
  qat_model = qat_fine_tune(model, train_ds, val_ds, epochs, learning_rate,
                            preserve_sparsity=preserve_sparsity,
                            preserve_clusters=preserve_clusters,
                            steps_per_epoch=steps_per_epoch, callbacks=logs("fit"),
                            verbose=verbose, **fine_tune_kwargs)
  record = {
      "preserve_sparsity": bool(preserve_sparsity),
      "preserve_clusters": preserve_clusters,
      "clusters": clusters or None,
      "input_sparsity": input_sparsity,
      "sparsity": magnitude_pruning.sparsity_report(qat_model),
      "unique_weights": clustering.unique_weight_counts(qat_model) if preserve_clusters else None,
      "val_accuracy": compile_lib.last_val_accuracy(qat_model.history),
  }
  return qat_model, record
