/* -----------------------------------------------------------------------
   libhipcgnative.so: the C interface of hipnn_capi.h.  The model file is read
   as the plugin reads it (torch::jit::load, spec_from_module), and the
   TorchScript module is kept so that a new temperature can be folded in.
------------------------------------------------------------------------- */

#include "hipnn_capi.h"

#include "hipnn_weights.h"

#include <torch/script.h>

#include <cstring>
#include <exception>
#include <memory>
#include <string>

struct hipcg_native_model {
  torch::jit::Module module;
  std::string model_kind;
  int n_types = 0;
  double cutoff = 0.0;
  bool single_precision = false;
  std::unique_ptr<hipcg_native::Evaluator> evaluator;
};

namespace {

const int ABI_VERSION = 1;

int fail(int status, const std::string &message, char *err, int err_len)
{
  if (err && err_len > 0) {
    std::strncpy(err, message.c_str(), static_cast<size_t>(err_len) - 1);
    err[err_len - 1] = '\0';
  }
  return status;
}

void build(hipcg_native_model &m, double temperature)
{
  const auto spec = hipcg_native::spec_from_module(m.module, m.model_kind, m.n_types, m.cutoff,
                                                   temperature);
  m.evaluator = hipcg_native::make_evaluator(spec, m.single_precision);
}

// runs body, turning exceptions into a status and message
template <class Body> int guarded(Body body, char *err, int err_len)
{
  try {
    body();
    return HIPCG_NATIVE_OK;
  } catch (const hipcg_native::Unsupported &e) {
    return fail(HIPCG_NATIVE_UNSUPPORTED, e.what(), err, err_len);
  } catch (const c10::Error &e) {
    return fail(HIPCG_NATIVE_ERROR, e.what_without_backtrace(), err, err_len);
  } catch (const std::exception &e) {
    return fail(HIPCG_NATIVE_ERROR, e.what(), err, err_len);
  }
}

}    // namespace

extern "C" {

int hipcg_native_abi_version(void) { return ABI_VERSION; }

int hipcg_native_open(const char *path, const char *model_kind, int n_types, double cutoff,
                      int single_precision, double temperature, hipcg_native_model **out,
                      char *err, int err_len)
{
  *out = nullptr;
  auto model = std::make_unique<hipcg_native_model>();
  const int status = guarded(
      [&] {
        model->module = torch::jit::load(path, torch::Device(torch::kCPU));
        model->module.eval();
        model->model_kind = model_kind;
        model->n_types = n_types;
        model->cutoff = cutoff;
        model->single_precision = single_precision != 0;
        build(*model, temperature);
      },
      err, err_len);
  if (status == HIPCG_NATIVE_OK) *out = model.release();
  return status;
}

int hipcg_native_set_temperature(hipcg_native_model *model, double temperature, char *err,
                                 int err_len)
{
  return guarded([&] { build(*model, temperature); }, err, err_len);
}

int hipcg_native_evaluate(hipcg_native_model *model, int n_nodes, const int64_t *species,
                          int64_t n_pairs, const int64_t *first, const int64_t *second,
                          const double *vec, int n_seed, int n_threads, double *node_energy,
                          double *grad, char *err, int err_len)
{
  return guarded(
      [&] {
        hipcg_native::Graph graph;
        graph.n_nodes = n_nodes;
        graph.species = species;
        graph.n_pairs = n_pairs;
        graph.first = first;
        graph.second = second;
        graph.vec = vec;
        model->evaluator->evaluate(graph, n_seed, n_threads < 1 ? 1 : n_threads, node_energy, grad);
      },
      err, err_len);
}

void hipcg_native_close(hipcg_native_model *model) { delete model; }

}    // extern "C"
