/* ----------------------------------------------------------------------
   pair_style hipcg

   Energy   E = sum over local beads i of e_i, with e_i the model's per-bead
            energy, evaluated on a graph of pair vectors r_ij = x_j - x_i
            (j = second) for all pairs closer than the model cutoff.
   Forces   by autograd with respect to the pair vectors: F_i += dE/dr_ij,
            F_j -= dE/dr_ij, on local and ghost beads; LAMMPS
            reverse-communicates the ghost forces (newton pair on).
   Virial   from f.r over local and ghost beads (virial_fdotr_compute);
            per-bead virial by splitting each pair's -r_ij (x) dE/dr_ij
            half and half.

   One interaction layer: a bead's energy depends only on its neighbours'
   species, so ghost beads never need to pass through the network: every
   ghost neighbour is represented by one shared "species node" per model
   type.  Several interaction layers: the graph holds local and ghost beads
   and the pairs of the ghost neighbour list, which requires a ghost cutoff
   of at least n_layers * cutoff + skin.
------------------------------------------------------------------------- */

#include "pair_hipcg.h"

#include <torch/csrc/autograd/autograd.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <unordered_map>

using namespace LAMMPS_NS;

static const char METADATA_FILE[] = "hipcg_metadata.json";
static const int CONTRACT_VERSION = 1;

PairHipcg::PairHipcg(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
  no_virial_fdotr_compute = 0;
}

PairHipcg::~PairHipcg()
{
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

/* pair_style hipcg [device cpu|cuda|cuda:N] [threads N] */

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
    } else if (key == "threads") {
      torch_threads_ = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (torch_threads_ < 1) error->all(FLERR, "pair_style hipcg: threads must be >= 1");
    } else {
      error->all(FLERR, "pair_style hipcg: unknown keyword '{}' (allowed: device, threads)", key);
    }
    iarg += 2;
  }
  device_ = choose_device(device_request_);
  if (torch_threads_ > 0) at::set_num_threads(torch_threads_);
  if (model_loaded_) model_.to(device_);
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

  model_.eval();
  model_.to(device_);
  model_loaded_ = true;
  ghostneigh = (n_interaction_layers_ > 1) ? 1 : 0;

  if (comm->me == 0)
    utils::logmesg(lmp, "pair hipcg: model {} ({} types, cutoff {} , {} interaction layer(s), "
                   "{}, device {})\n",
                   path, type_names_.size(), model_cutoff_, n_interaction_layers_,
                   dtype_ == torch::kFloat64 ? "float64" : "float32", device_.str());
}

void PairHipcg::init_style()
{
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style hipcg requires newton pair on (forces on ghost beads are "
               "reverse-communicated)");
  if (!model_loaded_) error->all(FLERR, "pair_style hipcg: pair_coeff with a model file is missing");

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

/* Collect the graph nodes and the pairs within the model cutoff. */

void PairHipcg::build_graph()
{
  double **x = atom->x;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const bool one_layer = (n_interaction_layers_ == 1);
  const int n_model_types = static_cast<int>(type_names_.size());

  n_nodes_ = one_layer ? nlocal + n_model_types : nall;
  node_species_.resize(n_nodes_);
  const int n_atom_nodes = one_layer ? nlocal : nall;
  for (int i = 0; i < n_atom_nodes; i++) node_species_[i] = lammps_to_model_type_[type[i]];
  if (one_layer)
    for (int t = 0; t < n_model_types; t++) node_species_[nlocal + t] = t;

  pair_first_node_.clear();
  pair_second_node_.clear();
  pair_first_atom_.clear();
  pair_second_atom_.clear();
  pair_vec_.clear();

  const double cutsq_model = model_cutoff_ * model_cutoff_;
  const int n_centres = one_layer ? list->inum : list->inum + list->gnum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  for (int ii = 0; ii < n_centres; ii++) {
    const int i = ilist[ii];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
      pair_first_atom_.push_back(i);
      pair_second_atom_.push_back(j);
      pair_first_node_.push_back(i);
      pair_second_node_.push_back((one_layer && j >= nlocal) ? nlocal + lammps_to_model_type_[type[j]]
                                                              : j);
      pair_vec_.push_back(dx);
      pair_vec_.push_back(dy);
      pair_vec_.push_back(dz);
    }
  }
}

void PairHipcg::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  build_graph();

  const int nlocal = atom->nlocal;
  const int64_t n_pairs = static_cast<int64_t>(pair_first_atom_.size());
  const auto long_cpu = torch::TensorOptions().dtype(torch::kInt64);

  torch::Tensor node_energy, grad;
  try {
    torch::Tensor species = torch::from_blob(node_species_.data(), {n_nodes_}, long_cpu).to(device_);
    torch::Tensor first = torch::from_blob(pair_first_node_.data(), {n_pairs}, long_cpu).to(device_);
    torch::Tensor second = torch::from_blob(pair_second_node_.data(), {n_pairs}, long_cpu).to(device_);
    // pair vectors are formed in float64 and only then cast to the model's precision
    torch::Tensor pair_vec = torch::from_blob(pair_vec_.data(), {n_pairs, 3}, torch::kFloat64)
                                 .to(device_, dtype_)
                                 .requires_grad_(true);

    node_energy = model_.forward({species, first, second, pair_vec}).toTensor();
    if (node_energy.dim() != 1 || node_energy.size(0) != n_nodes_)
      throw std::runtime_error("the model returned " + std::to_string(node_energy.numel()) +
                               " energies for " + std::to_string(n_nodes_) +
                               " graph nodes (expected a 1-d tensor, one energy per node)");
    torch::Tensor local_energy = node_energy.narrow(0, 0, nlocal).sum();
    auto grads = torch::autograd::grad({local_energy}, {pair_vec}, {}, false, false, true);
    grad = grads[0].defined() ? grads[0] : torch::zeros_like(pair_vec);
    grad = grad.to(torch::kCPU, torch::kFloat64).contiguous();
    node_energy = node_energy.detach().narrow(0, 0, nlocal).to(torch::kCPU, torch::kFloat64).contiguous();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair hipcg: evaluating model '{}' failed on step {}: {}", model_path_,
               update->ntimestep, e.what());
  }

  const double *g = grad.data_ptr<double>();
  const double *e = node_energy.data_ptr<double>();
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

  if (vflag_atom) {
    // W = -sum_pairs r (x) dE/dr, split equally between the two beads of a pair
    for (int64_t p = 0; p < n_pairs; p++) {
      const double *r = pair_vec_.data() + 3 * p;
      const double *gp = g + 3 * p;
      const double v[6] = {-0.5 * r[0] * gp[0], -0.5 * r[1] * gp[1], -0.5 * r[2] * gp[2],
                           -0.5 * r[0] * gp[1], -0.5 * r[0] * gp[2], -0.5 * r[1] * gp[2]};
      for (int k = 0; k < 6; k++) {
        vatom[pair_first_atom_[p]][k] += v[k];
        vatom[pair_second_atom_[p]][k] += v[k];
      }
    }
  }
  if (vflag_fdotr) virial_fdotr_compute();
}
