/* -*- c++ -*- -----------------------------------------------------------
   A native (plain C++, OpenMP) evaluator of the HIP-NN family as hipcg exports
   it: hippynn Hipnn (l=0), HipnnVec (l=1), HipnnQuad (l=2), any number of
   interaction and atom layers, the hierarchical energy head (HEnergy) and the
   repulsive pair prior.  It computes per-node energies and the analytic
   gradient of the summed energy of the first n_seed nodes with respect to the
   pair vectors: exactly the quantities the TorchScript path gets by autograd.

   This header does not depend on libtorch: the weights arrive as a ModelSpec
   of plain arrays (hipnn_weights.cpp fills it from a TorchScript module), so
   the same evaluator can later serve a Python binding.
------------------------------------------------------------------------- */
#ifndef HIPCG_HIPNN_NATIVE_H
#define HIPCG_HIPNN_NATIVE_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hipcg_native {

// highest tensor order of the interaction layers: Hipnn 0, HipnnVec 1, HipnnQuad 2
enum class TensorOrder { Scalar = 0, Vector = 1, Quadrupole = 2 };

// y = W x + b, W row-major (n_out x n_in) as torch.nn.Linear stores it; b may be empty
struct Linear {
  int n_in = 0, n_out = 0;
  std::vector<double> w, b;
};

struct InteractionSpec {
  int n_in = 0, n_out = 0, n_sens = 0;
  std::vector<double> mu, sigma;       // inverse sensitivities, n_sens each
  std::vector<double> int_weights;     // (n_sens, n_out, n_in) as hippynn stores it
  std::vector<double> vecscales, quadscales;    // n_out each when the order needs them
  Linear selfint;
  double cutoff = 0.0;      // hard cutoff of the cos^2 cutoff function
  double cusp_reg = 1e-6;   // hippynn's default regulariser under the tensor norms
};

// one hippynn block: ResNetWrapper(interaction), then ResNetWrapper(Linear) atom layers
struct BlockSpec {
  InteractionSpec interaction;
  Linear res;               // res_layer of the interaction's wrapper
  Linear adjust;            // adjust_layer (no bias); n_out == 0 means identity
  std::vector<Linear> atom_base, atom_res;
};

struct PriorSpec {
  bool present = false;
  int n_types = 0;
  std::vector<double> a, t, c;    // flattened (type_i * n_types + type_j)
};

struct ModelSpec {
  int n_types = 0;
  TensorOrder order = TensorOrder::Scalar;
  std::vector<BlockSpec> blocks;
  std::vector<Linear> head;       // HEnergy layers: one per feature level (one-hot first)
  PriorSpec prior;
};

// The graph of one evaluation (the model-file contract's inputs); vec is float64 x_j - x_i
struct Graph {
  int n_nodes = 0;
  const int64_t *species = nullptr;
  int64_t n_pairs = 0;
  const int64_t *first = nullptr, *second = nullptr;
  const double *vec = nullptr;    // 3 * n_pairs
};

// Precision-independent interface; make_evaluator picks float or double.
class Evaluator {
 public:
  virtual ~Evaluator() = default;
  // node_energy: n_nodes values; grad: 3 * n_pairs values, d(sum_{i < n_seed} e_i)/d vec
  virtual void evaluate(const Graph &graph, int n_seed, int n_threads, double *node_energy,
                        double *grad) = 0;
};

// Throws std::invalid_argument naming the inconsistent part of a spec.
std::unique_ptr<Evaluator> make_evaluator(const ModelSpec &spec, bool single_precision);
void check_spec(const ModelSpec &spec);

}    // namespace hipcg_native

#endif
