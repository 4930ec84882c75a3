/* ImageNet VGG-19 weights for the front end (conv1_1 ... conv4_2, VGG-19's first ten
 * convolutions), read from either
 *   - the HDF5 file of `tools/convert.py vgg19` (root attribute format = "sspose-backbone",
 *     version 1, input_norm; /params/<name>/{weight [O,I,3,3], bias [O]} float32), or
 *   - a Keras weights file (vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5: one group
 *     per layer, block{b}_conv{c}, listed in the root (or /model_weights) attribute
 *     layer_names, each with a weight_names attribute naming its kernel [3,3,I,O] (HWIO)
 *     and bias [O] datasets relative to the group; both spellings Keras has shipped,
 *     "<layer>/kernel:0" / "<layer>/bias:0" and "<layer>_W_1:0" / "<layer>_b_1:0", are
 *     also found without weight_names).
 * Format in docs/coco.md. Every problem with the file dies with one line naming it. */
#ifndef SSPOSE_MODEL_PRETRAINED_H
#define SSPOSE_MODEL_PRETRAINED_H

#include "core/config.h"
#include "model/net.h"

#define MODEL_BACKBONE_FORMAT "sspose-backbone"
#define MODEL_BACKBONE_VERSION 1
#define MODEL_VGG19_LAYERS 10

/* The ten sspose layer names, in network order, and their Keras names. */
extern const char *const model_vgg19_names[MODEL_VGG19_LAYERS];
extern const char *const model_vgg19_keras_names[MODEL_VGG19_LAYERS];

/* Overwrites conv1_1 ... conv4_2 of net (model.width must be 1) with the file's weights,
 * leaving every other parameter as it is. Returns the input normalisation the weights
 * were trained with: the file's input_norm attribute, or caffe for a Keras file. */
core_input_norm model_load_vgg19(model_net *net, const char *path);

#endif
