/* ----------------------------------------------------------------------
   TorchScript module -> hipcg_native::ModelSpec.

   The traced module keeps the module tree of hipcg's Python classes, so the
   parameter names are stable (docs/model-file-contract.md lists them):
     [network.]network.blocks.<b>.0.base_layer.{int_weights, sensitivity.mu, ...}
     [network.]head.layers.<l>.{weight, bias}
     [network.]entropy_head.layers.<l>.{weight, bias}, [network.]temperature,
     [network.]reference_temperature   (temperature-aware models only)
     prior.{a, t, c}                     (CGModel with a prior only)
   Every parameter must be consumed: one the evaluator does not know means a
   network it cannot evaluate, and the error names it.
------------------------------------------------------------------------- */

#include "hipnn_weights.h"

#include <map>
#include <set>

namespace hipcg_native {

namespace {

class Tensors {
 public:
  explicit Tensors(const torch::jit::Module &m)
  {
    for (const auto &p : m.named_parameters(true)) add(p.name, p.value);
    for (const auto &p : m.named_buffers(true)) add(p.name, p.value);
  }
  bool has(const std::string &name) const { return all_.count(name) > 0; }
  const torch::Tensor &get(const std::string &name)
  {
    auto it = all_.find(name);
    if (it == all_.end()) throw Unsupported("missing parameter '" + name + "'");
    used_.insert(name);
    return it->second;
  }
  std::vector<double> values(const std::string &name, std::vector<int64_t> shape)
  {
    const torch::Tensor &t = get(name);
    if (t.sizes().vec() != shape)
      throw Unsupported("parameter '" + name + "' has shape " + shape_string(t.sizes().vec()) +
                        ", expected " + shape_string(shape));
    torch::Tensor d = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  }
  std::vector<int64_t> shape(const std::string &name) { return get(name).sizes().vec(); }
  void ignore(const std::string &name) { used_.insert(name); }
  std::string first_unused() const
  {
    for (const auto &kv : all_)
      if (!used_.count(kv.first)) return kv.first;
    return "";
  }
  const std::map<std::string, torch::Tensor> &all() const { return all_; }

 private:
  std::map<std::string, torch::Tensor> all_;
  std::set<std::string> used_;
  void add(const std::string &name, const torch::Tensor &t) { all_[name] = t; }
  static std::string shape_string(const std::vector<int64_t> &s)
  {
    std::string out = "(";
    for (size_t k = 0; k < s.size(); k++) out += (k ? ", " : "") + std::to_string(s[k]);
    return out + ")";
  }
};

Linear linear(Tensors &ts, const std::string &prefix, bool bias)
{
  Linear l;
  const auto shape = ts.shape(prefix + "weight");
  if (shape.size() != 2) throw Unsupported("parameter '" + prefix + "weight' is not a matrix");
  l.n_out = static_cast<int>(shape[0]);
  l.n_in = static_cast<int>(shape[1]);
  l.w = ts.values(prefix + "weight", shape);
  if (bias) l.b = ts.values(prefix + "bias", {shape[0]});
  else if (ts.has(prefix + "bias"))
    throw Unsupported("layer '" + prefix + "' has a bias where hippynn has none");
  return l;
}

TensorOrder order_of(const std::string &model_kind)
{
  if (model_kind.rfind("hipnn:", 0) != 0)
    throw Unsupported("model kind '" + model_kind + "' is not a hippynn HIP-NN network");
  const std::string network = model_kind.substr(6, model_kind.find('+') - 6);
  if (network == "Hipnn") return TensorOrder::Scalar;
  if (network == "HipnnVec") return TensorOrder::Vector;
  if (network == "HipnnQuad") return TensorOrder::Quadrupole;
  throw Unsupported("network '" + network + "' (native: Hipnn, HipnnVec, HipnnQuad)");
}

// the module path of hippynn's network: "network." (HipnnEnergy) or "network.network." (CGModel)
std::string network_prefix(const Tensors &ts)
{
  const std::string key = "blocks.0.0.base_layer.int_weights";
  for (const auto &kv : ts.all()) {
    const std::string &name = kv.first;
    if (name.size() >= key.size() && name.compare(name.size() - key.size(), key.size(), key) == 0)
      return name.substr(0, name.size() - key.size());
  }
  throw Unsupported("no hippynn interaction layer (blocks.0.0.base_layer.int_weights) in the module");
}

BlockSpec block(Tensors &ts, const std::string &p, TensorOrder order, int n_in, double cutoff)
{
  BlockSpec blk;
  InteractionSpec &in = blk.interaction;
  const std::string base = p + "0.base_layer.";
  const auto w = ts.shape(base + "int_weights");
  if (w.size() != 3 || w[2] != n_in)
    throw Unsupported("'" + base + "int_weights' does not match the input width " + std::to_string(n_in));
  in.n_sens = static_cast<int>(w[0]);
  in.n_out = static_cast<int>(w[1]);
  in.n_in = n_in;
  in.int_weights = ts.values(base + "int_weights", w);
  in.mu = ts.values(base + "sensitivity.mu", {1, w[0]});
  in.sigma = ts.values(base + "sensitivity.sigma", {1, w[0]});
  in.cutoff = cutoff;
  if (order != TensorOrder::Scalar) in.vecscales = ts.values(base + "vecscales", {w[1]});
  if (order == TensorOrder::Quadrupole) {
    in.quadscales = ts.values(base + "quadscales", {w[1]});
    if (ts.has(base + "upper_ind")) ts.ignore(base + "upper_ind");    // constant index buffer
  }
  in.selfint = linear(ts, base + "selfint.", true);
  blk.res = linear(ts, p + "0.res_layer.", true);
  if (ts.has(p + "0.adjust_layer.weight")) blk.adjust = linear(ts, p + "0.adjust_layer.", false);
  for (int k = 1; ts.has(p + std::to_string(k) + ".base_layer.weight"); k++) {
    blk.atom_base.push_back(linear(ts, p + std::to_string(k) + ".base_layer.", true));
    blk.atom_res.push_back(linear(ts, p + std::to_string(k) + ".res_layer.", true));
  }
  return blk;
}

}    // namespace

ModelSpec spec_from_module(const torch::jit::Module &module, const std::string &model_kind,
                           int n_types, double cutoff, double temperature)
{
  Tensors ts(module);
  ModelSpec spec;
  spec.n_types = n_types;
  spec.order = order_of(model_kind);
  const std::string net = network_prefix(ts);
  const std::string suffix = "network.";
  if (net.size() < suffix.size() || net.compare(net.size() - suffix.size(), suffix.size(), suffix) != 0)
    throw Unsupported("hippynn network found at '" + net + "', not inside a hipcg HipnnEnergy");
  const std::string energy = net.substr(0, net.size() - suffix.size());
  int n_in = n_types;
  for (int b = 0; ts.has(net + "blocks." + std::to_string(b) + ".0.base_layer.int_weights"); b++) {
    spec.blocks.push_back(block(ts, net + "blocks." + std::to_string(b) + ".", spec.order, n_in, cutoff));
    n_in = spec.blocks.back().interaction.n_out;
  }
  for (int l = 0; ts.has(energy + "head.layers." + std::to_string(l) + ".weight"); l++)
    spec.head.push_back(linear(ts, energy + "head.layers." + std::to_string(l) + ".", l > 0));
  // temperature-aware (W = E - T S): the entropy head reads the same features as the energy
  // head and both are linear, so e_i - (T / T_ref) s_i is one head w_E - (T / T_ref) w_S
  const std::string entropy = energy + "entropy_head.layers.";
  if (ts.has(entropy + "0.weight")) {
    if (!(temperature > 0.0))
      throw Unsupported("the module is temperature-aware (it has '" + entropy + "0.weight') but "
                        "no temperature was given");
    const std::vector<double> t_ref = ts.values(energy + "reference_temperature", {});
    if (!(t_ref[0] > 0.0))
      throw Unsupported("'" + energy + "reference_temperature' is " + std::to_string(t_ref[0]) +
                        ", not > 0");
    ts.ignore(energy + "temperature");    // torch reads T from it; here T is the argument
    const double scale = temperature / t_ref[0];
    size_t l = 0;
    for (; ts.has(entropy + std::to_string(l) + ".weight"); l++) {
      if (l >= spec.head.size())
        throw Unsupported("the entropy head has more layers than the energy head");
      const Linear s = linear(ts, entropy + std::to_string(l) + ".", l > 0);
      Linear &h = spec.head[l];
      if (s.n_in != h.n_in || s.n_out != h.n_out || s.b.size() != h.b.size())
        throw Unsupported("entropy head layer " + std::to_string(l) +
                          " does not match the energy head's shape");
      for (size_t k = 0; k < h.w.size(); k++) h.w[k] -= scale * s.w[k];
      for (size_t k = 0; k < h.b.size(); k++) h.b[k] -= scale * s.b[k];
    }
    if (l != spec.head.size())
      throw Unsupported("the entropy head has fewer layers than the energy head");
  }
  if (ts.has("prior.a")) {
    const int64_t nn = static_cast<int64_t>(n_types) * n_types;
    spec.prior.present = true;
    spec.prior.n_types = n_types;
    spec.prior.a = ts.values("prior.a", {nn});
    spec.prior.t = ts.values("prior.t", {nn});
    spec.prior.c = ts.values("prior.c", {nn});
  } else if (model_kind.find("+prior") != std::string::npos) {
    throw Unsupported("metadata says the model has a prior, but the module has no prior.a/t/c");
  }
  const std::string unused = ts.first_unused();
  if (!unused.empty())
    throw Unsupported("parameter '" + unused + "' is not part of a network the native evaluator knows");
  try {
    check_spec(spec);
  } catch (const std::invalid_argument &e) {
    throw Unsupported(e.what());
  }
  return spec;
}

}    // namespace hipcg_native
