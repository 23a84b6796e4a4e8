/* -*- c++ -*- -----------------------------------------------------------
   pair_style hipcg: a machine-learned many-body potential read from a
   TorchScript model file that follows the hipcg model-file contract
   (docs/model-file-contract.md).
------------------------------------------------------------------------- */
#ifndef LMP_PAIR_HIPCG_H
#define LMP_PAIR_HIPCG_H

#include <torch/script.h>

#include "pair.h"

#include "hipcg_volume.h"
#include "hipnn_native.h"

#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairHipcg : public Pair {
 public:
  PairHipcg(class LAMMPS *);
  ~PairHipcg() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  void allocate();
  void load_model(const std::string &path);
  torch::Device choose_device(const std::string &request);
  void build_graph();
  void choose_backend();
  void check_temperature();    // the temperature keyword against the loaded model
  void apply_temperature();    // fills the module's temperature buffer with temperature_
  void try_native();
  void native_self_check(std::string &why_not);    // empty why_not: native agrees with torch
  void evaluate_torch(int n_seed, std::vector<double> &node_energy, std::vector<double> &grad);
  void evaluate_native(int n_seed, std::vector<double> &node_energy, std::vector<double> &grad);

  // model and what its metadata says about it
  torch::jit::Module model_;
  bool model_loaded_ = false;
  std::string model_path_;
  std::vector<std::string> type_names_;
  double model_cutoff_ = 0.0;
  int n_interaction_layers_ = 1;
  std::string model_units_;
  torch::Dtype dtype_ = torch::kFloat64;
  std::string model_kind_;    // metadata "model", e.g. hipnn:HipnnQuad+prior
  bool has_volume_term_ = false;    // metadata "volume_term" (hipcg_volume.h); null: none
  hipcg_volume::VolumeTerm volume_term_;
  bool temperature_aware_ = false;    // metadata "temperature_aware": W = E - (T / T_ref) S
  double reference_temperature_ = 0.0;    // metadata "reference_temperature", K

  // settings
  std::string device_request_ = "cpu";
  torch::Device device_ = torch::Device(torch::kCPU);
  int torch_threads_ = 0;    // 0: leave libtorch's default
  std::string backend_request_ = "auto";    // auto | native | torch
  double temperature_ = 0.0;    // K, for temperature-aware models; 0: not given

  // native evaluator (backend native): built from the model's own parameters at load time
  std::unique_ptr<hipcg_native::Evaluator> native_;
  bool use_native_ = false;
  std::vector<double> node_energy_, grad_;    // per-step results of either backend

  std::vector<int64_t> lammps_to_model_type_;    // index: LAMMPS type (1-based)

  // graph handed to the model each step; buffers are reused between steps
  int n_nodes_ = 0;
  std::vector<int64_t> node_species_;
  std::vector<int64_t> pair_first_node_, pair_second_node_;    // graph node indices
  std::vector<int> pair_first_atom_, pair_second_atom_;        // LAMMPS atom indices
  std::vector<double> pair_vec_;                               // x_second - x_first, float64
  std::vector<int> hop_;          // per atom: hops from the nearest local bead, -1 if unreached
  std::vector<int> atom_node_;    // per atom: graph node, -1 if represented by its species node
  std::vector<int> frontier_;     // atoms whose pairs enter the graph, in breadth-first order
  std::vector<int64_t> pair_offset_;    // per frontier atom: index of its first pair
  // HIPCG_PROFILE=1: time spent per part of compute(), printed when the pair style is deleted
  bool profile_ = false;
  long profiled_calls_ = 0;
  double profiled_pairs_ = 0.0;
  double time_graph_ = 0.0, time_model_ = 0.0, time_scatter_ = 0.0;
};

}    // namespace LAMMPS_NS

#endif
