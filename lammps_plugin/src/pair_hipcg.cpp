/* ----------------------------------------------------------------------
   pair_style hipcg

   Energy   E = sum over local beads i of e_i, with e_i the model's per-bead
            energy, evaluated on a graph of pair vectors r_ij = x_j - x_i
            (j = second) for all pairs closer than the model cutoff.
   Forces   by autograd with respect to the pair vectors: F_i += dE/dr_ij,
            F_j -= dE/dr_ij, on local and ghost beads; LAMMPS
            reverse-communicates the ghost forces (newton pair on).
   Virial   from f.r over local and ghost beads (virial_fdotr_compute), or,
            when LAMMPS asks for a pairwise global virial (under pair_style
            hybrid), as -sum_pairs r_ij (x) dE/dr_ij; per-bead virial by
            splitting each pair's term half and half.
   Volume   a model's optional volume term U_V(V) (metadata "volume_term",
            hipcg_volume.h) adds energy and virial, no forces.
   T-aware  a temperature-aware model (metadata "temperature_aware") returns
            e_i - (T / T_ref) s_i; T is pair_style's `temperature`, written
            into the module's temperature buffer (torch) or folded into the
            head weights (native).

   Two backends evaluate the model on that graph: `torch` runs the
   TorchScript module and differentiates it by autograd; `native` (the
   default on CPU for HIP-NN models) runs hipnn_native.cpp, a fused C++
   forward and analytic backward built from the module's own parameters and
   checked against the TorchScript module on a test cluster at load time.

   Only beads within n_layers - 1 hops of a local bead pass through the
   network (see build_graph); several interaction layers need the ghost
   neighbour list and a ghost cutoff of at least n_layers * cutoff + skin.
------------------------------------------------------------------------- */

#include "pair_hipcg.h"

#include "hipnn_weights.h"

#include <torch/csrc/autograd/autograd.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <malloc.h>
#include <omp.h>
#include <random>
#include <stdexcept>
#include <unordered_map>

using namespace LAMMPS_NS;
using Clock = std::chrono::steady_clock;

static const char METADATA_FILE[] = "hipcg_metadata.json";
static const int CONTRACT_VERSION = 1;

/* The network's temporaries are tens of MB each (pairs x sensitivities).  glibc serves such
   blocks with fresh mmap()s and returns them on free, so every step pays page faults to zero
   hundreds of MB again (measured: ~45% of a 256-bead step).  Keeping freed memory in the heap
   removes that.  Process-wide and harmless for LAMMPS (memory stays at its peak, which the
   next step needs anyway); HIPCG_MALLOC_TUNING=0 turns it off. */
static void tune_malloc_once()
{
  static bool done = false;
  if (done) return;
  done = true;
  const char *env = std::getenv("HIPCG_MALLOC_TUNING");
  if (env && std::string(env) == "0") return;
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

PairHipcg::PairHipcg(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
  no_virial_fdotr_compute = 0;
  const char *profile = std::getenv("HIPCG_PROFILE");
  profile_ = profile && std::string(profile) == "1";
  // The profiling graph executor specialises on tensor shapes; pair counts change every
  // step, so it would re-profile and re-optimise again and again (seconds per step).
  // Plain eager-style execution of the TorchScript graph is what a per-step MD call needs.
  tune_malloc_once();
  if (const char *opt = std::getenv("HIPCG_JIT_OPTIMIZE"))
    torch::jit::setGraphExecutorOptimize(std::string(opt) == "1");
  else
    torch::jit::setGraphExecutorOptimize(false);
}

PairHipcg::~PairHipcg()
{
  if (profile_ && profiled_calls_ > 0) {
    const double n = static_cast<double>(profiled_calls_);
    utils::logmesg(lmp, "pair hipcg profile (rank {}, {} calls, {:.0f} pairs/call): graph {:.3f} "
                   "ms, model ({} backend, forward + backward) {:.3f} ms, forces+virial {:.3f} ms per call\n",
                   comm->me, profiled_calls_, profiled_pairs_ / n, 1e3 * time_graph_ / n,
                   use_native_ ? "native" : "torch", 1e3 * time_model_ / n, 1e3 * time_scatter_ / n);
  }
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairHipcg::allocate()
{
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  memory->create(cutghost, n + 1, n + 1, "pair:cutghost");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

/* pair_style hipcg [backend native|torch] [device cpu|cuda|cuda:N] [threads N] [temperature T]

   A keyword not repeated when pair_style is re-issued keeps its value. */

void PairHipcg::settings(int narg, char **arg)
{
  int iarg = 0;
  while (iarg < narg) {
    const std::string key = arg[iarg];
    if (iarg + 1 >= narg)
      error->all(FLERR, "Illegal pair_style hipcg command: keyword '{}' needs a value", key);
    if (key == "device") {
      device_request_ = arg[iarg + 1];
      if (device_request_ != "cpu" && device_request_.rfind("cuda", 0) != 0)
        error->all(FLERR, "pair_style hipcg: device must be cpu, cuda or cuda:N, not '{}'",
                   device_request_);
    } else if (key == "backend") {
      backend_request_ = arg[iarg + 1];
      if (backend_request_ != "native" && backend_request_ != "torch")
        error->all(FLERR, "pair_style hipcg: backend must be native or torch, not '{}'",
                   backend_request_);
    } else if (key == "threads") {
      torch_threads_ = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (torch_threads_ < 1) error->all(FLERR, "pair_style hipcg: threads must be >= 1");
    } else if (key == "temperature") {
      const double t = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (!(t > 0.0) || !std::isfinite(t))
        error->all(FLERR, "pair_style hipcg: temperature must be > 0 K (finite), not {}",
                   arg[iarg + 1]);
      temperature_ = t;
    } else {
      error->all(FLERR, "pair_style hipcg: unknown keyword '{}' (allowed: backend, device, "
                 "threads, temperature)", key);
    }
    iarg += 2;
  }
  // Under pair_style hybrid (force->pair is the hybrid while it creates its sub-styles),
  // hybrid's own f.r over the summed forces would miss a volume term, which exerts no force;
  // hybrid reads this flag now, before pair_coeff says whether the model has one, so a
  // sub-style hipcg always asks hybrid to sum the sub-styles' own virials.
  if (force->pair != this) no_virial_fdotr_compute = 1;
  if (backend_request_ == "native" && device_request_ != "cpu")
    error->all(FLERR, "pair_style hipcg: backend native runs on the CPU only, not on device {}; "
               "use backend torch (or no backend keyword) with a GPU",
               device_request_);
  device_ = choose_device(device_request_);
  if (torch_threads_ > 0) at::set_num_threads(torch_threads_);
  if (model_loaded_) {
    check_temperature();
    model_.to(device_);
    apply_temperature();
    choose_backend();
  }
}

/* A temperature-aware model needs `temperature T`; any other model must not be given one. */

void PairHipcg::check_temperature()
{
  if (temperature_aware_ && !(temperature_ > 0.0))
    error->all(FLERR, "pair_coeff hipcg: model '{}' is temperature-aware (W = E - T S, T_ref = {} "
               "K) and needs the temperature it runs at: add 'temperature T' (K) to pair_style "
               "hipcg", model_path_, reference_temperature_);
  if (!temperature_aware_ && temperature_ > 0.0)
    error->all(FLERR, "pair_style hipcg temperature {}: model '{}' is not temperature-aware "
               "(metadata has no \"temperature_aware\": true); remove the temperature keyword",
               temperature_, model_path_);
}

/* Torch backend: the traced forward reads the module's temperature buffer, so filling it in
   place (its dtype and device) sets T.  The native evaluator gets T in spec_from_module. */

void PairHipcg::apply_temperature()
{
  if (!temperature_aware_) return;
  int filled = 0;
  {
    torch::NoGradGuard no_grad;
    for (const auto &b : model_.named_buffers(true)) {
      const std::string &name = b.name;
      const std::string tail = ".temperature";
      const bool match = name == "temperature" ||
          (name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0);
      if (!match) continue;
      if (b.value.dim() != 0)
        error->all(FLERR, "pair_coeff hipcg: model '{}': buffer '{}' is not a scalar", model_path_,
                   name);
      b.value.fill_(temperature_);
      filled++;
    }
  }
  if (filled == 0)
    error->all(FLERR, "pair_coeff hipcg: model '{}' says it is temperature-aware, but its module "
               "has no 'temperature' buffer (expected 'network.temperature')", model_path_);
  if (comm->me == 0)
    utils::logmesg(lmp, "pair hipcg: temperature-aware model, T = {} K (T_ref = {} K)\n",
                   temperature_, reference_temperature_);
}

/* Backend choice: native when asked for, or by default on the CPU when the model is a network
   the native evaluator knows and it agrees with the TorchScript module on a test cluster;
   torch otherwise.  Asked-for native that cannot run is an error naming the reason. */

void PairHipcg::choose_backend()
{
  use_native_ = false;
  native_.reset();
  if (backend_request_ != "torch" && device_.type() == torch::kCPU) try_native();
  if (comm->me == 0)
    utils::logmesg(lmp, "pair hipcg: backend {}\n", use_native_ ? "native" : "torch");
}

void PairHipcg::try_native()
{
  std::string reason;
  try {
    const auto spec = hipcg_native::spec_from_module(model_, model_kind_,
                                                     static_cast<int>(type_names_.size()),
                                                     model_cutoff_,
                                                     temperature_aware_ ? temperature_ : 0.0);
    native_ = hipcg_native::make_evaluator(spec, dtype_ == torch::kFloat32);
    native_self_check(reason);
  } catch (const hipcg_native::Unsupported &e) {
    reason = e.what();
  } catch (const std::exception &e) {
    reason = std::string("native evaluator failed to build: ") + e.what();
  }
  if (reason.empty()) {
    use_native_ = true;
  } else {
    native_.reset();
    if (backend_request_ == "native")
      error->all(FLERR, "pair_style hipcg backend native: model '{}' cannot be evaluated "
                 "natively: {}", model_path_, reason);
    if (comm->me == 0)
      error->warning(FLERR, "pair_style hipcg: model '{}' runs on backend torch, the native "
                     "evaluator cannot take it: {}", model_path_, reason);
  }
}

/* Native and TorchScript on the same random cluster (half of the nodes seeded, as local beads
   are): a parameter the loader misread, or a model detail it does not know, shows here. */

void PairHipcg::native_self_check(std::string &why)
{
  const int max_nodes = 14, n_types = static_cast<int>(type_names_.size());
  // beads no closer than 0.35 cutoff: a repulsive prior at tiny distances would dwarf the
  // network's energies and hide a disagreement in them
  std::mt19937_64 gen(12345);
  std::uniform_real_distribution<double> uniform(0.0, 1.2 * model_cutoff_);
  const double min_sq = 0.35 * 0.35 * model_cutoff_ * model_cutoff_;
  std::vector<double> pos;
  for (int attempt = 0; attempt < 100000 && static_cast<int>(pos.size()) < 3 * max_nodes; attempt++) {
    const double trial[3] = {uniform(gen), uniform(gen), uniform(gen)};
    bool clear = true;
    for (size_t k = 0; clear && k < pos.size(); k += 3) {
      const double dx = pos[k] - trial[0], dy = pos[k + 1] - trial[1], dz = pos[k + 2] - trial[2];
      clear = dx * dx + dy * dy + dz * dz >= min_sq;
    }
    if (clear) pos.insert(pos.end(), trial, trial + 3);
  }
  const int n_nodes = static_cast<int>(pos.size() / 3);    // 14 in practice (packing 0.18)
  n_nodes_ = n_nodes;
  node_species_.resize(n_nodes);
  for (int i = 0; i < n_nodes; i++) node_species_[i] = i % n_types;
  pair_first_node_.clear();
  pair_second_node_.clear();
  pair_vec_.clear();
  for (int i = 0; i < n_nodes; i++)
    for (int j = 0; j < n_nodes; j++) {
      double d[3], r2 = 0.0;
      for (int a = 0; a < 3; a++) {
        d[a] = pos[3 * j + a] - pos[3 * i + a];
        r2 += d[a] * d[a];
      }
      if (i == j || r2 >= model_cutoff_ * model_cutoff_) continue;
      pair_first_node_.push_back(i);
      pair_second_node_.push_back(j);
      pair_vec_.insert(pair_vec_.end(), d, d + 3);
    }
  std::vector<double> e_torch, g_torch, e_native, g_native;
  const int n_seed = n_nodes / 2;
  evaluate_torch(n_seed, e_torch, g_torch);
  evaluate_native(n_seed, e_native, g_native);
  auto rel = [](const std::vector<double> &a, const std::vector<double> &b, size_t n) {
    double diff = 0.0, scale = 0.0;
    for (size_t k = 0; k < n; k++) {
      diff = std::max(diff, std::fabs(a[k] - b[k]));
      scale = std::max(scale, std::fabs(b[k]));
    }
    return scale > 0.0 ? diff / scale : diff;
  };
  const double err_e = rel(e_native, e_torch, n_nodes);
  const double err_g = rel(g_native, g_torch, g_torch.size());
  const double tol = dtype_ == torch::kFloat32 ? 1e-3 : 1e-8;
  if (!(err_e <= tol && err_g <= tol))
    why = fmt::format("it disagrees with the TorchScript module on the load-time test cluster "
                      "(relative error: energies {:.2g}, gradients {:.2g}; tolerance {:.0g})",
                      err_e, err_g, tol);
}

torch::Device PairHipcg::choose_device(const std::string &request)
{
  if (request == "cpu") return torch::Device(torch::kCPU);
  if (!torch::cuda::is_available())
    error->all(FLERR,
               "pair_style hipcg device {}: no CUDA device is usable by this libtorch "
               "(CPU-only build or no GPU visible)",
               request);
  const int n_gpus = static_cast<int>(torch::cuda::device_count());
  int index;
  if (request.size() > 5 && request[4] == ':') {
    index = utils::inumeric(FLERR, request.substr(5), false, lmp);
    if (index < 0 || index >= n_gpus)
      error->all(FLERR, "pair_style hipcg device {}: only {} CUDA device(s) visible", request,
                 n_gpus);
  } else {
    // one GPU per rank on a node, round robin over the node-local ranks
    MPI_Comm node_comm;
    int node_rank = 0;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node_comm);
    MPI_Comm_rank(node_comm, &node_rank);
    MPI_Comm_free(&node_comm);
    index = node_rank % n_gpus;
  }
  return torch::Device(torch::kCUDA, index);
}

/* pair_coeff * * model.pt TypeName1 ... TypeNameN */

void PairHipcg::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff for hipcg needs '* * model.pt' followed by one model type name per "
               "LAMMPS atom type: expected {} type names, got {}",
               ntypes, narg - 3);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for hipcg must start with '* *', got '{} {}'", arg[0], arg[1]);

  load_model(arg[2]);

  lammps_to_model_type_.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    const std::string name = arg[2 + t];
    auto it = std::find(type_names_.begin(), type_names_.end(), name);
    if (it == type_names_.end()) {
      std::string known;
      for (const auto &n : type_names_) known += " " + n;
      error->all(FLERR, "pair_coeff hipcg: type name '{}' (LAMMPS type {}) is not in model '{}', "
                 "whose types are:{}",
                 name, t, model_path_, known);
    }
    lammps_to_model_type_[t] = it - type_names_.begin();
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairHipcg::load_model(const std::string &path)
{
  model_path_ = path;
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe.good())
      error->all(FLERR, "pair_coeff hipcg: cannot open model file '{}'", path);
  }
  std::unordered_map<std::string, std::string> extra{{METADATA_FILE, ""}};
  try {
    model_ = torch::jit::load(path, torch::Device(torch::kCPU), extra);
  } catch (const c10::Error &e) {
    error->all(FLERR, "pair_coeff hipcg: '{}' is not a readable TorchScript model file "
               "(truncated, corrupt or another format): {}",
               path, e.what_without_backtrace());
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff hipcg: cannot load model file '{}': {}", path, e.what());
  }
  if (extra[METADATA_FILE].empty())
    error->all(FLERR, "pair_coeff hipcg: '{}' is a TorchScript file but not a hipcg model: "
               "it has no {} (export models with `hipcg export`)",
               path, METADATA_FILE);

  try {
    auto meta = json::parse(extra[METADATA_FILE]);
    const int version = meta.at("format_version").get<int>();
    if (version != CONTRACT_VERSION)
      error->all(FLERR, "pair_coeff hipcg: model '{}' follows model-file contract version {}, "
                 "this plugin reads version {}",
                 path, version, CONTRACT_VERSION);
    type_names_ = meta.at("type_names").get<std::vector<std::string>>();
    model_cutoff_ = meta.at("cutoff").get<double>();
    n_interaction_layers_ = meta.at("n_interaction_layers").get<int>();
    model_units_ = meta.at("units").get<std::string>();
    model_kind_ = meta.value("model", std::string());
    has_volume_term_ = false;
    const auto volume = meta.find("volume_term");
    if (volume != meta.end() && !volume->is_null()) {
      try {
        volume_term_ = hipcg_volume::VolumeTerm::from_json(*volume);
      } catch (const std::invalid_argument &e) {
        error->all(FLERR, "pair_coeff hipcg: bad volume term in model '{}': {}", path, e.what());
      }
      has_volume_term_ = true;
    }
    const auto aware = meta.find("temperature_aware");
    temperature_aware_ = aware != meta.end() && !aware->is_null() && aware->get<bool>();
    reference_temperature_ = 0.0;
    if (temperature_aware_) {
      const auto t_ref = meta.find("reference_temperature");
      if (t_ref == meta.end() || !t_ref->is_number() || !(t_ref->get<double>() > 0.0))
        error->all(FLERR, "pair_coeff hipcg: model '{}' is temperature-aware but its metadata "
                   "has no reference_temperature > 0", path);
      reference_temperature_ = t_ref->get<double>();
    }
    const std::string dtype = meta.at("dtype").get<std::string>();
    if (dtype == "float64")
      dtype_ = torch::kFloat64;
    else if (dtype == "float32")
      dtype_ = torch::kFloat32;
    else
      error->all(FLERR, "pair_coeff hipcg: model '{}' has dtype '{}'; allowed: float32, float64",
                 path, dtype);
  } catch (const json::exception &e) {
    error->all(FLERR, "pair_coeff hipcg: bad metadata in model '{}': {}", path, e.what());
  }
  if (type_names_.empty() || model_cutoff_ <= 0.0 || n_interaction_layers_ < 1)
    error->all(FLERR, "pair_coeff hipcg: model '{}' metadata needs type names, cutoff > 0 and "
               ">= 1 interaction layer", path);
  if (model_units_ != update->unit_style)
    error->all(FLERR, "pair_coeff hipcg: model '{}' is in units '{}' but this LAMMPS run uses "
               "units '{}'",
               path, model_units_, update->unit_style);

  check_temperature();
  model_.eval();
  model_.to(device_);
  apply_temperature();
  model_loaded_ = true;
  ghostneigh = (n_interaction_layers_ > 1) ? 1 : 0;
  choose_backend();

  if (comm->me == 0)
    utils::logmesg(lmp, "pair hipcg: model {} ({} types, cutoff {} , {} interaction layer(s), "
                   "{}, device {})\n",
                   path, type_names_.size(), model_cutoff_, n_interaction_layers_,
                   dtype_ == torch::kFloat64 ? "float64" : "float32", device_.str());
  if (comm->me == 0 && has_volume_term_)
    utils::logmesg(lmp, "pair hipcg: volume term P_V = p0 - K (v - v0)/v0 with p0 = {} atm, "
                   "K = {} atm, v0 = {} A^3 per bead\n",
                   volume_term_.p0, volume_term_.bulk, volume_term_.v0);
}

void PairHipcg::init_style()
{
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style hipcg requires newton pair on (forces on ghost beads are "
               "reverse-communicated)");
  if (!model_loaded_) error->all(FLERR, "pair_style hipcg: pair_coeff with a model file is missing");
  if (has_volume_term_) {
    const std::string problem = hipcg_volume::box_problem(domain);
    if (!problem.empty())
      error->all(FLERR, "pair_style hipcg: model '{}' has a volume term, which needs a 3d box "
                 "periodic in x, y and z (the volume is undefined otherwise); {}",
                 model_path_, problem);
  }

  if (n_interaction_layers_ > 1) {
    const double needed = n_interaction_layers_ * model_cutoff_ + neighbor->skin;
    const double have = std::max(comm->cutghostuser, model_cutoff_ + neighbor->skin);
    if (have < needed)
      error->all(FLERR,
                 "pair_style hipcg: model '{}' has {} interaction layers, so ghost beads must "
                 "reach {} x cutoff {} + skin {} = {}; the ghost cutoff is {}. Add "
                 "'comm_modify cutoff {}' to the input",
                 model_path_, n_interaction_layers_, n_interaction_layers_, model_cutoff_,
                 neighbor->skin, needed, have, needed);
    neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  } else {
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }
}

double PairHipcg::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = model_cutoff_;
  return model_cutoff_;
}

/* Collect the graph nodes and the pairs within the model cutoff.

   With L interaction layers a local bead's energy depends on beads up to L cutoffs away, but
   only beads within L-1 hops of a local bead need features of their own: the beads one hop
   further contribute nothing but their species (the input features).  So a breadth-first
   search from the local beads marks hop counts; beads at hop < L become graph nodes (local
   beads first, keeping their LAMMPS index), and every neighbour at hop L is represented by
   one shared node per model type.  For L = 1 this means ghosts never enter the network. */

void PairHipcg::build_graph()
{
  double **x = atom->x;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int n_layers = n_interaction_layers_;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const double cutsq_model = model_cutoff_ * model_cutoff_;

  hop_.assign(nall, -1);
  atom_node_.assign(nall, -1);
  frontier_.clear();
  for (int ii = 0; ii < list->inum; ii++) {
    const int i = list->ilist[ii];
    hop_[i] = 0;
    atom_node_[i] = i;
    frontier_.push_back(i);
  }
  int n_real = nlocal;

  // hops first (serial: breadth-first order numbers the nodes); for one layer only the local
  // beads are nodes and there is nothing to search.  frontier_ grows while it is walked: beads
  // at hop k are appended while hop k-1 is processed.
  if (n_layers > 1)
    for (size_t f = 0; f < frontier_.size(); f++) {
      const int i = frontier_[f];
      const int next_hop = hop_[i] + 1;
      if (next_hop > n_layers) continue;
      const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
      const int *jlist = firstneigh[i];
      const int jnum = numneigh[i];
      for (int jj = 0; jj < jnum; jj++) {
        const int j = jlist[jj] & NEIGHMASK;
        if (hop_[j] >= 0) continue;
        const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
        if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
        hop_[j] = next_hop;
        if (next_hop < n_layers) {
          atom_node_[j] = n_real++;
          frontier_.push_back(j);
        }
      }
    }

  // then the pairs of every frontier bead, in frontier order and neighbour-list order: counted,
  // offsets, filled, each bead's pairs by one thread (this was ~25 ns per pair in one thread,
  // a quarter of the native model's time at 10,000 beads)
  const int n_frontier = static_cast<int>(frontier_.size());
  pair_offset_.assign(n_frontier + 1, 0);
  const int threads = torch_threads_ > 0 ? torch_threads_ : omp_get_max_threads();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int f = 0; f < n_frontier; f++) {
    const int i = frontier_[f];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    int64_t count = 0;
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      count += dx * dx + dy * dy + dz * dz < cutsq_model;
    }
    pair_offset_[f + 1] = count;
  }
  for (int f = 0; f < n_frontier; f++) pair_offset_[f + 1] += pair_offset_[f];
  const int64_t n_pairs = pair_offset_[n_frontier];
  pair_first_node_.resize(n_pairs);
  pair_second_node_.resize(n_pairs);
  pair_first_atom_.resize(n_pairs);
  pair_second_atom_.resize(n_pairs);
  pair_vec_.resize(3 * n_pairs);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int f = 0; f < n_frontier; f++) {
    const int i = frontier_[f];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    int64_t p = pair_offset_[f];
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
      pair_first_atom_[p] = i;
      pair_second_atom_[p] = j;
      pair_first_node_[p] = atom_node_[i];
      // hop-L beads: placeholder -(model type + 1), resolved once n_real is known
      pair_second_node_[p] = atom_node_[j] >= 0 ? atom_node_[j] : -(lammps_to_model_type_[type[j]] + 1);
      pair_vec_[3 * p] = dx;
      pair_vec_[3 * p + 1] = dy;
      pair_vec_[3 * p + 2] = dz;
      p++;
    }
  }
  if (n_real > nall) error->one(FLERR, "pair hipcg: internal error building the graph");

  const int n_model_types = static_cast<int>(type_names_.size());
  n_nodes_ = n_real + n_model_types;
  node_species_.resize(n_nodes_);
  for (int i = 0; i < nall; i++)
    if (atom_node_[i] >= 0) node_species_[atom_node_[i]] = lammps_to_model_type_[type[i]];
  for (int t = 0; t < n_model_types; t++) node_species_[n_real + t] = t;
  for (auto &node : pair_second_node_)
    if (node < 0) node = n_real + (-node - 1);
}

/* TorchScript backend: forward, then autograd of the seeded energy w.r.t. the pair vectors.
   Fills node_energy (n_nodes_, float64) and grad (3 x pairs, float64). */

void PairHipcg::evaluate_torch(int n_seed, std::vector<double> &node_energy,
                               std::vector<double> &grad)
{
  const int64_t n_pairs = static_cast<int64_t>(pair_first_node_.size());
  const auto long_cpu = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor species = torch::from_blob(node_species_.data(), {n_nodes_}, long_cpu).to(device_);
  torch::Tensor first = torch::from_blob(pair_first_node_.data(), {n_pairs}, long_cpu).to(device_);
  torch::Tensor second = torch::from_blob(pair_second_node_.data(), {n_pairs}, long_cpu).to(device_);
  // pair vectors are formed in float64 and only then cast to the model's precision
  torch::Tensor pair_vec = torch::from_blob(pair_vec_.data(), {n_pairs, 3}, torch::kFloat64)
                               .to(device_, dtype_)
                               .requires_grad_(true);
  torch::Tensor energy = model_.forward({species, first, second, pair_vec}).toTensor();
  if (energy.dim() != 1 || energy.size(0) != n_nodes_)
    throw std::runtime_error("the model returned " + std::to_string(energy.numel()) +
                             " energies for " + std::to_string(n_nodes_) +
                             " graph nodes (expected a 1-d tensor, one energy per node)");
  torch::Tensor seeded = energy.narrow(0, 0, n_seed).sum();
  auto grads = torch::autograd::grad({seeded}, {pair_vec}, {}, false, false, true);
  torch::Tensor g = grads[0].defined() ? grads[0] : torch::zeros_like(pair_vec);
  g = g.to(torch::kCPU, torch::kFloat64).contiguous();
  energy = energy.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  node_energy.assign(energy.data_ptr<double>(), energy.data_ptr<double>() + n_nodes_);
  grad.assign(g.data_ptr<double>(), g.data_ptr<double>() + 3 * n_pairs);
}

void PairHipcg::evaluate_native(int n_seed, std::vector<double> &node_energy,
                                std::vector<double> &grad)
{
  hipcg_native::Graph graph;
  graph.n_nodes = n_nodes_;
  graph.species = node_species_.data();
  graph.n_pairs = static_cast<int64_t>(pair_first_node_.size());
  graph.first = pair_first_node_.data();
  graph.second = pair_second_node_.data();
  graph.vec = pair_vec_.data();
  node_energy.resize(n_nodes_);
  grad.resize(3 * graph.n_pairs);
  const int threads = torch_threads_ > 0 ? torch_threads_ : omp_get_max_threads();
  native_->evaluate(graph, n_seed, threads, node_energy.data(), grad.data());
}

void PairHipcg::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const auto t0 = Clock::now();
  build_graph();
  const auto t1 = Clock::now();

  const int nlocal = atom->nlocal;
  const int64_t n_pairs = static_cast<int64_t>(pair_first_atom_.size());
  try {
    if (use_native_)
      evaluate_native(nlocal, node_energy_, grad_);
    else
      evaluate_torch(nlocal, node_energy_, grad_);
  } catch (const std::exception &e) {
    error->one(FLERR, "pair hipcg: evaluating model '{}' ({} backend) failed on step {}: {}",
               model_path_, use_native_ ? "native" : "torch", update->ntimestep, e.what());
  }
  const auto t2 = Clock::now();

  const double *g = grad_.data();
  const double *e = node_energy_.data();
  double **f = atom->f;

  double energy = 0.0;
  for (int i = 0; i < nlocal; i++) energy += e[i];
  if (!std::isfinite(energy))
    error->one(FLERR, "pair hipcg: model '{}' gave a non-finite energy on step {} (beads too "
               "close or a blown-up run?)",
               model_path_, update->ntimestep);

  for (int64_t p = 0; p < n_pairs; p++) {
    const int i = pair_first_atom_[p], j = pair_second_atom_[p];
    const double *gp = g + 3 * p;
    f[i][0] += gp[0];
    f[i][1] += gp[1];
    f[i][2] += gp[2];
    f[j][0] -= gp[0];
    f[j][1] -= gp[1];
    f[j][2] -= gp[2];
  }

  if (eflag_global) eng_vdwl += energy;
  if (eflag_atom)
    for (int i = 0; i < nlocal; i++) eatom[i] += e[i];

  if (vflag_atom || vflag_global) {
    // W = -sum_pairs r (x) dE/dr: per bead split equally between the two beads of a pair;
    // whole for the global virial when there is no f.r this call (sub-style of hybrid)
    double w[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    for (int64_t p = 0; p < n_pairs; p++) {
      const double *r = pair_vec_.data() + 3 * p;
      const double *gp = g + 3 * p;
      const double v[6] = {-r[0] * gp[0], -r[1] * gp[1], -r[2] * gp[2],
                           -r[0] * gp[1], -r[0] * gp[2], -r[1] * gp[2]};
      for (int k = 0; k < 6; k++) {
        w[k] += v[k];
        if (vflag_atom) {
          vatom[pair_first_atom_[p]][k] += 0.5 * v[k];
          vatom[pair_second_atom_[p]][k] += 0.5 * v[k];
        }
      }
    }
    if (vflag_global)
      for (int k = 0; k < 6; k++) virial[k] += w[k];
  }
  // the volume term goes after f.r, which cannot see it (no forces); virial_fdotr_compute
  // clears vflag_fdotr, so whether a global virial is being summed is read first
  const bool global_virial = vflag_global || vflag_fdotr;
  if (vflag_fdotr) virial_fdotr_compute();
  if (has_volume_term_) volume_term_.add_to(lmp, *this, global_virial);
  if (profile_) {
    const auto t4 = Clock::now();
    time_graph_ += std::chrono::duration<double>(t1 - t0).count();
    time_model_ += std::chrono::duration<double>(t2 - t1).count();
    time_scatter_ += std::chrono::duration<double>(t4 - t2).count();
    profiled_calls_++;
    profiled_pairs_ += n_pairs;
  }
}
