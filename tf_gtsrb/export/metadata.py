"""TFLite metadata for the classifiers: what MediaPipe Tasks needs to run them as-is.

`add_metadata` does what the TFLite Support / MediaPipe `MetadataPopulator`
does, without their native modules: it builds a `ModelMetadata` flatbuffer
(file identifier "M001") with the model's name, description, version, author
and license; the input as an RGB image with its normalization (mean 0, std
255: the model takes pixel / 255 in real values, which its int8/uint8 input
quantization encodes) and the output as class probabilities with `labels.txt`
attached as a TENSOR_AXIS_LABELS file. The buffer goes into the model's
`metadata` list under the name "TFLITE_METADATA"; labels.txt is appended to the
flatbuffer as an uncompressed zip (TFLite interpreters, TFLite Micro included,
ignore bytes after the flatbuffer). The model is repacked with every constant
buffer aligned to 16 bytes, and its signature renamed to `serving_default`
with input key `image` and output key `probabilities`. Operators, tensors and
weights stay as they are, so predictions do not change.

Example:
  data = metadata.add_metadata(data, metadata.ModelInfo(name="traffic_sign_cnn_pruned_int8"))
  metadata.read_metadata(data)["output"]["labels"][:2]  # ('Speed limit (20km/h)', ...)
"""

import dataclasses
import io
import struct
import zipfile

import flatbuffers
from ai_edge_litert import schema_py_generated as schema

import tf_gtsrb
from tf_gtsrb import errors
from tf_gtsrb.data.class_names import CLASS_NAMES
from tf_gtsrb.models import flatbuffer
from tf_gtsrb.export import labels as labels_lib
from tf_gtsrb.export import metadata_schema_py_generated as meta_fb

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
# Every feature written here (image/feature content, normalization, stats,
# associated label files) is readable by metadata parsers from version 1.0.0.
MIN_PARSER_VERSION = "1.0.0"
SIGNATURE_KEY = "serving_default"
INPUT_KEY = "image"
OUTPUT_KEY = "probabilities"
# Real-valued model input = (pixel - NORM_MEAN) / NORM_STD = pixel / 255.
NORM_MEAN = 0.0
NORM_STD = 255.0
BUFFER_ALIGNMENT = 16
_DTYPE_NAMES = {value: name.lower() for name, value in vars(schema.TensorType).items()
                if not name.startswith("_")}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """General information written into the metadata."""
  name: str
  description: str = ("GTSRB traffic-sign classifier, 43 classes. Input: the whole sign image "
                      "with its margin, resized to 32x32 RGB.")
  version: str = tf_gtsrb.__version__
  author: str = "tf_gtsrb"
  license: str = "Apache-2.0"


def add_metadata(tflite_bytes, info, class_names=CLASS_NAMES, source="<tflite bytes>"):
  """Returns the model with metadata and labels.txt attached (replacing any it had).

  Raises ModelError when the model is not a one-input image classifier whose
  output has one score per class.
  """
  flatbuffer.check_identifier(tflite_bytes, source)
  graph = flatbuffer.parse(tflite_bytes, source)
  image = flatbuffer.check_image_input(graph, source)
  if len(graph.outputs) != 1:
    raise errors.ModelError(f"{source}: expected one output, got {len(graph.outputs)}")
  scores = graph.tensors[graph.outputs[0]]
  if not scores.shape or scores.shape[-1] != len(class_names):
    raise errors.ModelError(f"{source}: output shape {scores.shape} does not end in "
                            f"{len(class_names)} classes")
  model = unpack(tflite_bytes)
  label_file = labels_lib.LABELS_FILE
  metadata_buffer = _metadata_buffer(info, image.dtype, scores.dtype, label_file)
  _set_metadata_entry(model, metadata_buffer)
  _name_signature(model)
  packed = pack(model)
  return packed + _zip({label_file: labels_lib.labels_text(class_names).encode("utf-8")})


def _metadata_buffer(info, input_dtype, output_dtype, label_file):
  image = meta_fb.TensorMetadataT()
  image.name = INPUT_KEY
  image.description = (f"RGB image, {input_dtype}: real value = pixel / 255 "
                       + {"int8": "(int8 value = pixel - 128)", "uint8": "(uint8 value = pixel)",
                          }.get(input_dtype, "(float value = pixel / 255)") + ".")
  image.content = meta_fb.ContentT()
  image.content.contentPropertiesType = meta_fb.ContentProperties.ImageProperties
  image.content.contentProperties = meta_fb.ImagePropertiesT()
  image.content.contentProperties.colorSpace = meta_fb.ColorSpaceType.RGB
  normalization = meta_fb.ProcessUnitT()
  normalization.optionsType = meta_fb.ProcessUnitOptions.NormalizationOptions
  normalization.options = meta_fb.NormalizationOptionsT()
  normalization.options.mean = [NORM_MEAN]
  normalization.options.std = [NORM_STD]
  image.processUnits = [normalization]
  image.stats = meta_fb.StatsT()
  if input_dtype == "uint8":  # As MediaPipe's writer: raw pixel range for uint8 input.
    image.stats.min, image.stats.max = [0.0], [255.0]
  else:
    image.stats.min = [(0.0 - NORM_MEAN) / NORM_STD]
    image.stats.max = [(255.0 - NORM_MEAN) / NORM_STD]

  scores = meta_fb.TensorMetadataT()
  scores.name = OUTPUT_KEY
  scores.description = f"Probability of each of the 43 classes ({output_dtype})."
  scores.content = meta_fb.ContentT()
  scores.content.contentPropertiesType = meta_fb.ContentProperties.FeatureProperties
  scores.content.contentProperties = meta_fb.FeaturePropertiesT()
  scores.stats = meta_fb.StatsT()
  scores.stats.min, scores.stats.max = ([0.0], [255.0]) if output_dtype == "uint8" else \
      ([0.0], [1.0])
  label = meta_fb.AssociatedFileT()
  label.name = label_file
  label.description = "Class names, one a line; line index = class id."
  label.type = meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS
  scores.associatedFiles = [label]

  subgraph = meta_fb.SubGraphMetadataT()
  subgraph.inputTensorMetadata = [image]
  subgraph.outputTensorMetadata = [scores]
  model = meta_fb.ModelMetadataT()
  model.name = info.name
  model.description = info.description
  model.version = info.version
  model.author = info.author
  model.license = info.license
  model.subgraphMetadata = [subgraph]
  model.minParserVersion = MIN_PARSER_VERSION
  builder = flatbuffers.Builder(0)
  builder.Finish(model.Pack(builder), METADATA_IDENTIFIER)
  return bytes(builder.Output())


def _set_metadata_entry(model, metadata_buffer):
  buffer = schema.BufferT()
  buffer.data = metadata_buffer
  model.metadata = model.metadata or []
  model.buffers = model.buffers or []
  for entry in model.metadata:
    if _text(entry.name) == METADATA_NAME:
      model.buffers[entry.buffer] = buffer
      return
  model.buffers.append(buffer)
  entry = schema.MetadataT()
  entry.name = METADATA_NAME
  entry.buffer = len(model.buffers) - 1
  model.metadata.append(entry)


def _name_signature(model):
  """One signature, `serving_default`, with keys `image` and `probabilities`."""
  subgraph = model.subgraphs[0]
  signature = schema.SignatureDefT()
  signature.signatureKey = SIGNATURE_KEY
  signature.subgraphIndex = 0
  signature.inputs = [_tensor_map(INPUT_KEY, subgraph.inputs[0])]
  signature.outputs = [_tensor_map(OUTPUT_KEY, subgraph.outputs[0])]
  model.signatureDefs = [signature]


def _tensor_map(name, index):
  tensor_map = schema.TensorMapT()
  tensor_map.name = name
  tensor_map.tensorIndex = int(index)
  return tensor_map


class _AlignedBufferT(schema.BufferT):
  """A BufferT whose data vector starts at a multiple of BUFFER_ALIGNMENT bytes."""

  def Pack(self, builder):  # pylint: disable=invalid-name
    data = None
    if self.data is not None and len(self.data):
      raw = bytes(memoryview(self.data).cast("B")) if not isinstance(self.data, bytes) \
          else self.data
      builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
      builder.head -= len(raw)
      builder.Bytes[builder.head:builder.head + len(raw)] = raw
      data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
      schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, self.offset)
    schema.BufferAddSize(builder, self.size)
    return schema.BufferEnd(builder)


def unpack(tflite_bytes):
  """.tflite bytes as a schema ModelT (the object API `pack` writes back)."""
  return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytes(tflite_bytes), 0))


def pack(model):
  """A schema ModelT as .tflite bytes (buffers aligned)."""
  for i, buffer in enumerate(model.buffers):
    if buffer.offset:
      raise errors.ModelError("models with buffers stored outside the flatbuffer are not "
                              "supported")
    aligned = _AlignedBufferT()
    aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
    model.buffers[i] = aligned
  builder = flatbuffers.Builder(1024)
  builder.Finish(model.Pack(builder), flatbuffer.FILE_IDENTIFIER)
  return bytes(builder.Output())


def _zip(files):
  """An uncompressed zip of `files` (name -> bytes), as the metadata readers expect."""
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
    for name, data in files.items():
      info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
      archive.writestr(info, data)
  return out.getvalue()


def _text(value):
  return value.decode("utf-8") if isinstance(value, bytes) else value


def associated_files(tflite_bytes):
  """{name: bytes} of the files zipped after the flatbuffer (empty when none)."""
  try:
    with zipfile.ZipFile(io.BytesIO(bytes(tflite_bytes))) as archive:
      return {name: archive.read(name) for name in archive.namelist()}
  except zipfile.BadZipFile:
    return {}


def metadata_buffer(tflite_bytes, source="<tflite bytes>"):
  """The TFLITE_METADATA buffer of a model, or None when it has none."""
  flatbuffer.parse(tflite_bytes, source)  # ModelError for truncated or malformed models.
  try:
    model = schema.Model.GetRootAsModel(bytes(tflite_bytes), 0)
    for i in range(model.MetadataLength()):
      entry = model.Metadata(i)
      if _text(entry.Name()) == METADATA_NAME:
        data = model.Buffers(entry.Buffer())
        return bytes(data.DataAsNumpy().tobytes()) if data.DataLength() else None
  except (struct.error, IndexError, ValueError) as e:
    raise errors.ModelError(f"{source}: malformed TFLite model: {e}") from e
  return None


def read_metadata(tflite_bytes, source="<tflite bytes>"):
  """The model's metadata as a dict; ModelError when it has none or it is malformed.

  Keys: name, description, version, author, license, min_parser_version,
  input (name, mean, std, color_space, min, max), output (name,
  label_file, labels: the class names read from the attached file),
  signature (key, inputs, outputs).
  """
  data = metadata_buffer(tflite_bytes, source)
  if data is None:
    raise errors.ModelError(f"{source}: the model has no {METADATA_NAME} metadata")
  if not meta_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
    raise errors.ModelError(f"{source}: the {METADATA_NAME} buffer is not TFLite metadata")
  root = meta_fb.ModelMetadataT.InitFromObj(meta_fb.ModelMetadata.GetRootAsModelMetadata(data, 0))
  subgraph = root.subgraphMetadata[0]
  image, scores = subgraph.inputTensorMetadata[0], subgraph.outputTensorMetadata[0]
  options = image.processUnits[0].options
  label_files = [f for f in scores.associatedFiles or []
                 if f.type == meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS]
  files = associated_files(tflite_bytes)
  label_file = _text(label_files[0].name) if label_files else None
  if label_file is not None and label_file not in files:
    raise errors.ModelError(f"{source}: the metadata names {label_file} but the model does not "
                            "carry it")
  model = schema.Model.GetRootAsModel(bytes(tflite_bytes), 0)
  signatures = []
  for i in range(model.SignatureDefsLength()):
    sig = model.SignatureDefs(i)
    signatures.append({
        "key": _text(sig.SignatureKey()),
        "inputs": [_text(sig.Inputs(j).Name()) for j in range(sig.InputsLength())],
        "outputs": [_text(sig.Outputs(j).Name()) for j in range(sig.OutputsLength())]})
  return {
      "name": _text(root.name), "description": _text(root.description),
      "version": _text(root.version), "author": _text(root.author),
      "license": _text(root.license), "min_parser_version": _text(root.minParserVersion),
      "input": {"name": _text(image.name),
                "color_space": image.content.contentProperties.colorSpace,
                "mean": [float(v) for v in options.mean], "std": [float(v) for v in options.std],
                "min": [float(v) for v in image.stats.min],
                "max": [float(v) for v in image.stats.max]},
      "output": {"name": _text(scores.name), "label_file": label_file,
                 "labels": tuple(files[label_file].decode("utf-8").splitlines())
                 if label_file else ()},
      "signatures": signatures,
  }
