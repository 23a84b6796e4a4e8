/* -*- c++ -*- -----------------------------------------------------------
   Reads the weights of a hipcg HIP-NN model file for the native evaluator from
   the TorchScript module's named parameters and buffers (no extra record in the
   file: every model exported by hipcg so far already carries them).
------------------------------------------------------------------------- */
#ifndef HIPCG_HIPNN_WEIGHTS_H
#define HIPCG_HIPNN_WEIGHTS_H

#include <torch/script.h>

#include <stdexcept>
#include <string>

#include "hipnn_native.h"

namespace hipcg_native {

// What the native path cannot evaluate; the message names the unsupported part.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// model_kind: the metadata's "model" (e.g. "hipnn:HipnnQuad+prior"); cutoff: its "cutoff";
// temperature: K, for a temperature-aware module (entropy head), whose head becomes
// w_E - (T / T_ref) w_S per layer; <= 0: not given (an error for such a module)
ModelSpec spec_from_module(const torch::jit::Module &module, const std::string &model_kind,
                           int n_types, double cutoff, double temperature = 0.0);

}    // namespace hipcg_native

#endif
