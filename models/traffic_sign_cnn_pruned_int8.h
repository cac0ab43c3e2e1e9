// TFLite model as a C array: 102181 bytes.
#ifndef TRAFFIC_SIGN_CNN_PRUNED_INT8_H_
#define TRAFFIC_SIGN_CNN_PRUNED_INT8_H_

extern const unsigned char g_traffic_sign_cnn_pruned_int8_model[];
extern const int g_traffic_sign_cnn_pruned_int8_model_len;

// Tensor arena for TFLite Micro: 35408 bytes measured with the TFLite Micro Python interpreter (x86-64, reference kernels) + 10% margin, rounded up to 16 bytes; 32-bit targets need a little less.
constexpr int kTrafficSignCnnPrunedInt8TensorArenaSize = 38960;

#endif  // TRAFFIC_SIGN_CNN_PRUNED_INT8_H_
