// TFLite model as a C array: 100200 bytes.
#ifndef MODEL_INT8_H_
#define MODEL_INT8_H_

extern const unsigned char g_model[];
extern const int g_model_len;

#endif  // MODEL_INT8_H_
