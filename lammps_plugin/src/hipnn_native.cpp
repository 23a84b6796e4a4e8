/* ----------------------------------------------------------------------
   Native HIP-NN / HIP-NN-TS evaluator (see hipnn_native.h).

   The math is hippynn 0.1.3's, written out for one node at a time:

   sensitivity  s_nu(r) = exp(-(1/r - 1/mu_nu)^2 sigma_nu^2 / 2) cos^2(pi r / (2 r_c))
   tensors      T(p) = (1, u, traceless u u^T in hippynn's 5 components xx xy xz yy yz),
                u = (x_first - x_second) / r  (hippynn's pair_coord sign)
   environment  E_i[c, nu, f] = sum_{pairs p = (i, j)} s_nu T_c z_j[f]
   interaction  h_i = V_0 E_i + vecscales |V_vec E_i| + quadscales |V_quad E_i| + W z_i + b,
                |.| with hippynn's cusp regulariser under the square root
   blocks       ResNetWrapper: y = R softplus(h) + r_b + (A z or z)
   head         e_i = sum_levels w_l . z_l[i] (+ b_l), level 0 = the one-hot input
   prior        e_i += sum_{pairs (i, j)} c/2 exp(a (t - r))

   The backward pass is the exact reverse of those steps.  Nothing of size
   pairs x sensitivities x tensor components is ever stored: environments and
   their gradients live in per-thread scratch for one node at a time; only the
   sensitivities and their radial derivatives (pairs x sensitivities per
   layer) are kept between the passes.
------------------------------------------------------------------------- */

#include "hipnn_native.h"

#include "hipnn_math.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace hipcg_native {

namespace {

int n_components(TensorOrder order)
{
  return order == TensorOrder::Scalar ? 1 : order == TensorOrder::Vector ? 4 : 9;
}

void require(bool ok, const std::string &what)
{
  if (!ok) throw std::invalid_argument(what);
}

void check_linear(const Linear &l, int n_in, int n_out, bool bias, const std::string &name)
{
  require(l.n_in == n_in && l.n_out == n_out &&
              l.w.size() == static_cast<size_t>(n_in) * n_out,
          name + ": weight shape does not match the layer sizes");
  require(!bias || l.b.size() == static_cast<size_t>(n_out), name + ": missing or bad bias");
}

template <typename T> std::vector<T> cast(const std::vector<double> &v)
{
  return std::vector<T>(v.begin(), v.end());
}

template <typename T> struct LinearT {
  int n_in = 0, n_out = 0;
  std::vector<T> w, b;
  std::vector<T> wt;    // W transposed (n_in x n_out): the forward pass as vector updates of y
  LinearT() = default;
  explicit LinearT(const Linear &l) : n_in(l.n_in), n_out(l.n_out), w(cast<T>(l.w)), b(cast<T>(l.b))
  {
    wt.resize(w.size());
    for (int o = 0; o < n_out; o++)
      for (int i = 0; i < n_in; i++)
        wt[static_cast<size_t>(i) * n_out + o] = w[static_cast<size_t>(o) * n_in + i];
  }
  bool empty() const { return n_out == 0; }

  // y = W x + b (y may not alias x), as y += x_i W[:, i]: whole-vector updates, no horizontal
  // sums, and zero inputs (one-hot features) cost nothing
  void forward(const T *x, T *y) const
  {
    if (b.empty())
      std::fill(y, y + n_out, T(0));
    else
      std::copy(b.begin(), b.end(), y);
    for (int i = 0; i < n_in; i++) {
      const T xi = x[i];
      if (xi == T(0)) continue;
      const T *col = wt.data() + static_cast<size_t>(i) * n_out;
#pragma omp simd
      for (int o = 0; o < n_out; o++) y[o] += col[o] * xi;
    }
  }
  // gx += W^T gy
  void backward_add(const T *gy, T *gx) const
  {
    for (int o = 0; o < n_out; o++) {
      const T *row = w.data() + static_cast<size_t>(o) * n_in;
      const T g = gy[o];
      if (g == T(0)) continue;
      for (int i = 0; i < n_in; i++) gx[i] += row[i] * g;
    }
  }
};

// sensitivity rows are padded with zeros to this multiple, so that the per-pair loops over
// sensitivities are whole SIMD vectors
constexpr int SENS_PAD = 8;

template <typename T> struct InteractionT {
  int n_in, n_out, n_sens, n_comp;
  int nsp;    // n_sens rounded up to SENS_PAD
  std::vector<T> inv_mu, sigma2, vecscales, quadscales;    // 1/mu and sigma^2 of hippynn
  std::vector<T> wt;    // (n_sens * n_in, n_out): hippynn's weights_rs, rows contiguous in o
  LinearT<T> selfint;
  T cutoff, cusp;

  InteractionT(const InteractionSpec &s, TensorOrder order)
      : n_in(s.n_in), n_out(s.n_out), n_sens(s.n_sens), n_comp(n_components(order)),
        nsp((s.n_sens + SENS_PAD - 1) / SENS_PAD * SENS_PAD),
        vecscales(cast<T>(s.vecscales)),
        quadscales(cast<T>(s.quadscales)), selfint(s.selfint), cutoff(T(s.cutoff)),
        cusp(T(s.cusp_reg))
  {
    for (int nu = 0; nu < n_sens; nu++) {
      inv_mu.push_back(T(1) / T(s.mu[nu]));
      sigma2.push_back(T(s.sigma[nu]) * T(s.sigma[nu]));
    }
    wt.resize(static_cast<size_t>(n_sens) * n_in * n_out);
    for (int nu = 0; nu < n_sens; nu++)
      for (int o = 0; o < n_out; o++)
        for (int f = 0; f < n_in; f++)
          wt[(static_cast<size_t>(nu) * n_in + f) * n_out + o] =
              T(s.int_weights[(static_cast<size_t>(nu) * n_out + o) * n_in + f]);
  }

  // s_nu(r) and ds_nu/dr for one pair (nsp entries, the padding zero)
  void sensitivity(T r, T cut, T dcut, T *s, T *ds) const
  {
    sensitivity_row(r, cut, dcut, inv_mu.data(), sigma2.data(), n_sens, nsp, s, ds);
  }
};

template <typename T> struct BlockT {
  InteractionT<T> interaction;
  LinearT<T> res, adjust;
  std::vector<LinearT<T>> atom_base, atom_res;
  BlockT(const BlockSpec &b, TensorOrder order)
      : interaction(b.interaction, order), res(b.res), adjust(b.adjust)
  {
    for (const auto &l : b.atom_base) atom_base.emplace_back(l);
    for (const auto &l : b.atom_res) atom_res.emplace_back(l);
  }
  int n_atom_layers() const { return static_cast<int>(atom_base.size()); }
};

// Activations of one block, kept from the forward for the backward pass (node-major arrays)
template <typename T> struct BlockCache {
  std::vector<T> h_int;      // softplus' of the interaction pre-activation, n_nodes x n_out
  std::vector<T> comp;       // V_c E per tensor component, n_nodes x n_comp x n_out
  std::vector<T> norms;      // |vec|, |quad| per node, n_nodes x 2 x n_out
  std::vector<std::vector<T>> h_atom, y;    // softplus'(pre-activation) and output per atom
                                            // layer; y[0] = after the interaction
};

template <typename T> class EvaluatorT : public Evaluator {
 public:
  explicit EvaluatorT(const ModelSpec &spec) : n_types_(spec.n_types), order_(spec.order),
                                              n_comp_(n_components(spec.order)), prior_(spec.prior)
  {
    for (const auto &b : spec.blocks) blocks_.emplace_back(b, spec.order);
    for (const auto &h : spec.head) head_.emplace_back(h);
    prior_a_ = cast<T>(spec.prior.a);
    prior_t_ = cast<T>(spec.prior.t);
    prior_c_ = cast<T>(spec.prior.c);
  }

  void evaluate(const Graph &g, int n_seed, int n_threads, double *node_energy,
                double *grad) override
  {
    n_threads_ = std::max(1, n_threads);
    sort_pairs(g);
    geometry(g);
    forward(g.species);
    energies(g.species, node_energy);
    backward(g.species, n_seed, grad);
  }

 private:
  int n_types_;
  TensorOrder order_;
  int n_comp_;
  PriorSpec prior_;
  std::vector<T> prior_a_, prior_t_, prior_c_;
  std::vector<BlockT<T>> blocks_;
  std::vector<LinearT<T>> head_;
  int n_threads_ = 1;

  // graph, with pairs sorted by their first node (CSR): pair q of the sorted list is pair
  // order_[q] of the caller's list
  int n_nodes_ = 0;
  std::vector<int64_t> offsets_, order_list_, second_;
  std::vector<T> r_, u_, tens_;    // per sorted pair: r, u (3), tensor components (9)
  std::vector<T> cut_, dcut_;      // per sorted pair: cutoff function and its r-derivative
  std::vector<std::vector<T>> sens_, dsens_;    // per block: n_pairs x nsp
  std::vector<std::vector<T>> z_;               // features entering block b; z_[0] one-hot
  std::vector<BlockCache<T>> cache_;
  std::vector<T> g_r_, g_u_;                    // dE/dr and dE/du per sorted pair

  void sort_pairs(const Graph &g)
  {
    n_nodes_ = g.n_nodes;
    offsets_.assign(n_nodes_ + 1, 0);
    for (int64_t p = 0; p < g.n_pairs; p++) {
      if (g.first[p] < 0 || g.first[p] >= n_nodes_ || g.second[p] < 0 || g.second[p] >= n_nodes_)
        throw std::out_of_range("pair index outside the graph's nodes");
      offsets_[g.first[p] + 1]++;
    }
    for (int i = 0; i < n_nodes_; i++) offsets_[i + 1] += offsets_[i];
    std::vector<int64_t> fill(offsets_.begin(), offsets_.end() - 1);
    order_list_.resize(g.n_pairs);
    second_.resize(g.n_pairs);
    for (int64_t p = 0; p < g.n_pairs; p++) {
      const int64_t q = fill[g.first[p]]++;
      order_list_[q] = p;
      second_[q] = g.second[p];
    }
  }

  // distances, unit vectors and tensor components, in the model's precision as the
  // TorchScript path has them (the float64 pair vector is cast first)
  void geometry(const Graph &g)
  {
    const int64_t n = g.n_pairs;
    r_.resize(n);
    u_.resize(3 * n);
    tens_.resize(9 * n);
#pragma omp parallel for num_threads(n_threads_) schedule(static)
    for (int64_t q = 0; q < n; q++) {
      const double *v = g.vec + 3 * order_list_[q];
      const T c0 = -T(v[0]), c1 = -T(v[1]), c2 = -T(v[2]);    // hippynn: x_first - x_second
      const T r = std::sqrt(c0 * c0 + c1 * c1 + c2 * c2);
      const T u0 = c0 / r, u1 = c1 / r, u2 = c2 / r;
      r_[q] = r;
      u_[3 * q] = u0, u_[3 * q + 1] = u1, u_[3 * q + 2] = u2;
      const T tr = (u0 * u0 + u1 * u1 + u2 * u2) / T(3);
      T *t = tens_.data() + 9 * q;
      t[0] = T(1), t[1] = u0, t[2] = u1, t[3] = u2;
      t[4] = u0 * u0 - tr, t[5] = u0 * u1, t[6] = u0 * u2, t[7] = u1 * u1 - tr, t[8] = u1 * u2;
    }
    // every layer has the same cutoff (hippynn's dist_hard_max, the metadata cutoff)
    cut_.resize(n);
    dcut_.resize(n);
    cos2_cutoff(r_.data(), static_cast<long>(n), blocks_[0].interaction.cutoff, cut_.data(),
                dcut_.data());
    sens_.resize(blocks_.size());
    dsens_.resize(blocks_.size());
    for (size_t b = 0; b < blocks_.size(); b++) {
      const auto &in = blocks_[b].interaction;
      sens_[b].resize(n * in.nsp);
      dsens_[b].resize(n * in.nsp);
#pragma omp parallel for num_threads(n_threads_) schedule(static)
      for (int64_t q = 0; q < n; q++)
        in.sensitivity(r_[q], cut_[q], dcut_[q], sens_[b].data() + q * in.nsp,
                       dsens_[b].data() + q * in.nsp);
    }
  }

  // ---------------------------------------------------------------- forward

  void forward(const int64_t *species)
  {
    const size_t nb = blocks_.size();
    z_.resize(nb + 1);
    cache_.resize(nb);
    z_[0].assign(static_cast<size_t>(n_nodes_) * n_types_, T(0));
    for (int i = 0; i < n_nodes_; i++) z_[0][static_cast<size_t>(i) * n_types_ + species[i]] = T(1);
    for (size_t b = 0; b < nb; b++) {
      forward_block(b, species);
      z_[b + 1] = cache_[b].y.back();
    }
  }

  void forward_block(size_t b, const int64_t *species)
  {
    const BlockT<T> &blk = blocks_[b];
    const InteractionT<T> &in = blk.interaction;
    BlockCache<T> &c = cache_[b];
    const int nf = in.n_out, n_atom = blk.n_atom_layers();
    const size_t nn = n_nodes_;
    c.h_int.resize(nn * nf);
    c.comp.resize(nn * n_comp_ * nf);
    c.norms.resize(nn * 2 * nf);
    c.h_atom.resize(n_atom);
    c.y.resize(n_atom + 1);
    for (auto &v : c.h_atom) v.resize(nn * nf);
    for (auto &v : c.y) v.resize(nn * nf);
    const bool one_hot = (b == 0);
    const T *z = z_[b].data();
#pragma omp parallel num_threads(n_threads_)
    {
      std::vector<T> env(static_cast<size_t>(n_comp_) * in.nsp * in.n_in);
      std::vector<T> act(nf), tmp(nf);
#pragma omp for schedule(dynamic, 16)
      for (int i = 0; i < n_nodes_; i++) {
        accumulate_environment(b, i, one_hot, species, z, env.data());
        interaction_output(in, env.data(), z + static_cast<size_t>(i) * in.n_in, c, i, tmp.data());
        // ResNetWrapper around the interaction: y = R softplus(h) + r_b + (A z | z)
        // h is replaced by softplus'(h): all the backward pass needs of it
        T *h = c.h_int.data() + static_cast<size_t>(i) * nf;
        T *y = c.y[0].data() + static_cast<size_t>(i) * nf;
        softplus_rows(h, act.data(), h, nf);
        blk.res.forward(act.data(), y);
        if (blk.adjust.empty()) {
          for (int o = 0; o < nf; o++) y[o] += z[static_cast<size_t>(i) * in.n_in + o];
        } else {
          blk.adjust.forward(z + static_cast<size_t>(i) * in.n_in, tmp.data());
          for (int o = 0; o < nf; o++) y[o] += tmp[o];
        }
        for (int k = 0; k < n_atom; k++) {
          const T *y_prev = c.y[k].data() + static_cast<size_t>(i) * nf;
          T *hk = c.h_atom[k].data() + static_cast<size_t>(i) * nf;
          T *yk = c.y[k + 1].data() + static_cast<size_t>(i) * nf;
          blk.atom_base[k].forward(y_prev, hk);
          softplus_rows(hk, act.data(), hk, nf);
          blk.atom_res[k].forward(act.data(), yk);
          for (int o = 0; o < nf; o++) yk[o] += y_prev[o];
        }
      }
    }
  }

  // E_i[f, c, nu] = sum over i's pairs of z_j[f] T_c s_nu (layout f, c, padded nu: the
  // innermost loop is a whole vector of sensitivities); a one-hot z touches one f per pair
  void accumulate_environment(size_t b, int i, bool one_hot, const int64_t *species, const T *z,
                              T *env) const
  {
    const InteractionT<T> &in = blocks_[b].interaction;
    const int nsp = in.nsp, nfi = in.n_in, block = n_comp_ * nsp;
    std::fill(env, env + static_cast<size_t>(block) * nfi, T(0));
    for (int64_t q = offsets_[i]; q < offsets_[i + 1]; q++) {
      const int64_t j = second_[q];
      const T *s = sens_[b].data() + q * nsp;
      const T *t = tens_.data() + 9 * q;
      for (int f = 0; f < nfi; f++) {
        const T zf = one_hot ? (species[j] == f ? T(1) : T(0)) : z[j * nfi + f];
        if (zf == T(0)) continue;
        T *e = env + static_cast<size_t>(f) * block;
        for (int cc = 0; cc < n_comp_; cc++) {
          const T a = zf * t[cc];
          T *row = e + cc * nsp;
#pragma omp simd
          for (int nu = 0; nu < nsp; nu++) row[nu] += a * s[nu];
        }
      }
    }
  }

  // h_i from E_i: component outputs V E_c, the tensor norms, the self term (self: nf scratch)
  void interaction_output(const InteractionT<T> &in, const T *env, const T *zi, BlockCache<T> &c,
                          int i, T *self) const
  {
    const int nf = in.n_out, nfi = in.n_in, nsp = in.nsp;
    T *comp = c.comp.data() + static_cast<size_t>(i) * n_comp_ * nf;
    std::fill(comp, comp + n_comp_ * nf, T(0));
    for (int f = 0; f < nfi; f++)
      for (int cc = 0; cc < n_comp_; cc++) {
        const T *e = env + (static_cast<size_t>(f) * n_comp_ + cc) * nsp;
        T *out = comp + cc * nf;
        for (int nu = 0; nu < in.n_sens; nu++) {
          const T ek = e[nu];
          if (ek == T(0)) continue;    // one-hot inputs leave most of E zero
          const T *w = in.wt.data() + (static_cast<size_t>(nu) * nfi + f) * nf;
#pragma omp simd
          for (int o = 0; o < nf; o++) out[o] += ek * w[o];
        }
      }
    T *h = c.h_int.data() + static_cast<size_t>(i) * nf;
    T *norms = c.norms.data() + static_cast<size_t>(i) * 2 * nf;
    for (int o = 0; o < nf; o++) h[o] = comp[o];
    if (order_ != TensorOrder::Scalar) {
      for (int o = 0; o < nf; o++) {
        const T v0 = comp[nf + o], v1 = comp[2 * nf + o], v2 = comp[3 * nf + o];
        norms[o] = std::sqrt(v0 * v0 + v1 * v1 + v2 * v2 + in.cusp);
        h[o] += norms[o] * in.vecscales[o];
      }
    }
    if (order_ == TensorOrder::Quadrupole) {
      for (int o = 0; o < nf; o++) {
        const T *q = comp + 4 * nf + o;    // components xx xy xz yy yz, stride nf
        T sq = T(0);
        for (int k = 0; k < 5; k++) sq += q[k * nf] * q[k * nf];
        norms[nf + o] = std::sqrt(T(2) * (sq + q[0] * q[3 * nf]) + in.cusp);
        h[o] += norms[nf + o] * in.quadscales[o];
      }
    }
    in.selfint.forward(zi, self);
    for (int o = 0; o < nf; o++) h[o] += self[o];
  }

  void energies(const int64_t *species, double *node_energy) const
  {
#pragma omp parallel for num_threads(n_threads_) schedule(static)
    for (int i = 0; i < n_nodes_; i++) {
      T e = T(0);
      for (size_t l = 0; l < head_.size(); l++) {
        T part;
        head_[l].forward(z_[l].data() + static_cast<size_t>(i) * head_[l].n_in, &part);
        e = (l == 0) ? part : e + part;
      }
      if (prior_.present) {
        T p = T(0);
        for (int64_t q = offsets_[i]; q < offsets_[i + 1]; q++)
          p += T(0.5) * prior_energy(species[i], species[second_[q]], r_[q]);
        e += p;
      }
      node_energy[i] = static_cast<double>(e);
    }
  }

  T prior_energy(int64_t ti, int64_t tj, T r) const
  {
    const size_t k = static_cast<size_t>(ti * prior_.n_types + tj);
    return prior_c_[k] * std::exp(prior_a_[k] * (prior_t_[k] - r));
  }

  // --------------------------------------------------------------- backward

  void backward(const int64_t *species, int n_seed, double *grad)
  {
    const int64_t n_pairs = static_cast<int64_t>(r_.size());
    g_r_.assign(n_pairs, T(0));
    g_u_.assign(3 * n_pairs, T(0));
    prior_backward(species, n_seed);
    const int nb = static_cast<int>(blocks_.size());
    // gradient of E with respect to the block outputs, seeded by the energy head
    std::vector<T> gz = head_seed(nb, n_seed);
    for (int b = nb - 1; b >= 0; b--) gz = backward_block(b, species, n_seed, gz);
    pair_vector_gradient(grad);
  }

  std::vector<T> head_seed(int level, int n_seed) const
  {
    const LinearT<T> &h = head_[level];
    std::vector<T> gz(static_cast<size_t>(n_nodes_) * h.n_in, T(0));
    for (int i = 0; i < n_seed; i++)
      for (int f = 0; f < h.n_in; f++) gz[static_cast<size_t>(i) * h.n_in + f] = h.w[f];
    return gz;
  }

  void prior_backward(const int64_t *species, int n_seed)
  {
    if (!prior_.present) return;
#pragma omp parallel for num_threads(n_threads_) schedule(static)
    for (int i = 0; i < n_seed; i++)
      for (int64_t q = offsets_[i]; q < offsets_[i + 1]; q++) {
        const size_t k = static_cast<size_t>(species[i] * prior_.n_types + species[second_[q]]);
        g_r_[q] += -T(0.5) * prior_a_[k] * prior_energy(species[i], species[second_[q]], r_[q]);
      }
  }

  // gradient w.r.t. block b's output in, gradient w.r.t. its input (features z_b) out
  std::vector<T> backward_block(int b, const int64_t *species, int n_seed, const std::vector<T> &gy)
  {
    const BlockT<T> &blk = blocks_[b];
    const InteractionT<T> &in = blk.interaction;
    const BlockCache<T> &c = cache_[b];
    const int nf = in.n_out, nfi = in.n_in, n_atom = blk.n_atom_layers();
    const bool need_input_grad = b > 0;    // block 0's input is the constant one-hot
    std::vector<T> gz(need_input_grad ? static_cast<size_t>(n_nodes_) * nfi : 0, T(0));
    // messages to neighbour features race between nodes: one accumulator per thread
    std::vector<std::vector<T>> gz_thread(need_input_grad ? n_threads_ : 0);
#pragma omp parallel num_threads(n_threads_)
    {
      const int tid = omp_get_thread_num();
      std::vector<T> g(nf), ga(nf), gh(nf), gcomp(static_cast<size_t>(n_comp_) * nf);
      std::vector<T> genv(static_cast<size_t>(n_comp_) * in.nsp * nfi);
      std::vector<T> genv_t(static_cast<size_t>(comp_pad()) * in.nsp * nfi);
      T *gz_msg = nullptr;
      if (need_input_grad) {
        gz_thread[tid].assign(static_cast<size_t>(n_nodes_) * nfi, T(0));
        gz_msg = gz_thread[tid].data();
      }
#pragma omp for schedule(dynamic, 16)
      for (int i = 0; i < n_nodes_; i++) {
        const size_t row = static_cast<size_t>(i) * nf;
        std::copy(gy.begin() + row, gy.begin() + row + nf, g.begin());
        for (int k = n_atom - 1; k >= 0; k--) {
          // y_k = y_{k-1} + R softplus(L y_{k-1} + l_b) + r_b
          std::fill(ga.begin(), ga.end(), T(0));
          blk.atom_res[k].backward_add(g.data(), ga.data());
          for (int o = 0; o < nf; o++) ga[o] *= c.h_atom[k][row + o];    // softplus'(h)
          blk.atom_base[k].backward_add(ga.data(), g.data());
        }
        std::fill(gh.begin(), gh.end(), T(0));
        blk.res.backward_add(g.data(), gh.data());
        for (int o = 0; o < nf; o++) gh[o] *= c.h_int[row + o];    // softplus'(h)
        T *gzi = need_input_grad ? gz.data() + static_cast<size_t>(i) * nfi : nullptr;
        if (gzi) {
          if (blk.adjust.empty())
            for (int o = 0; o < nf; o++) gzi[o] += g[o];
          else
            blk.adjust.backward_add(g.data(), gzi);
          in.selfint.backward_add(gh.data(), gzi);
        }
        component_gradient(in, c, i, gh.data(), gcomp.data());
        environment_gradient(in, gcomp.data(), genv.data(), genv_t.data());
        pair_backward(b, i, species, genv.data(), genv_t.data(), gz_msg);
      }
    }
    if (!need_input_grad) return gz;
    for (int t = 0; t < n_threads_; t++) {
      const T *src = gz_thread[t].data();
#pragma omp parallel for num_threads(n_threads_) schedule(static)
      for (size_t k = 0; k < gz.size(); k++) gz[k] += src[k];
    }
    // the features entering block b are also a level of the energy head
    const LinearT<T> &h = head_[b];
    for (int i = 0; i < n_seed; i++)
      for (int f = 0; f < nfi; f++) gz[static_cast<size_t>(i) * nfi + f] += h.w[f];
    return gz;
  }

  // dE/d(V_c E) from dE/dh through the scalar part and the two norms
  void component_gradient(const InteractionT<T> &in, const BlockCache<T> &c, int i, const T *gh,
                          T *gcomp) const
  {
    const int nf = in.n_out;
    const T *comp = c.comp.data() + static_cast<size_t>(i) * n_comp_ * nf;
    const T *norms = c.norms.data() + static_cast<size_t>(i) * 2 * nf;
    for (int o = 0; o < nf; o++) gcomp[o] = gh[o];
    if (order_ != TensorOrder::Scalar)
      for (int o = 0; o < nf; o++) {
        const T scale = gh[o] * in.vecscales[o] / norms[o];
        for (int a = 1; a <= 3; a++) gcomp[a * nf + o] = scale * comp[a * nf + o];
      }
    if (order_ == TensorOrder::Quadrupole)
      for (int o = 0; o < nf; o++) {
        // |Q| = sqrt(2 (sum_k Q_k^2 + Q_xx Q_yy) + cusp)
        const T scale = gh[o] * in.quadscales[o] / norms[nf + o];
        const T *q = comp + 4 * nf + o;
        T *gq = gcomp + 4 * nf + o;
        for (int k = 0; k < 5; k++) gq[k * nf] = scale * T(2) * q[k * nf];
        gq[0] += scale * q[3 * nf];
        gq[3 * nf] += scale * q[0];
      }
  }

  // tensor components padded to whole SIMD vectors in the transposed gradient layout
  int comp_pad() const { return (n_comp_ + SENS_PAD - 1) / SENS_PAD * SENS_PAD; }

  // dE/dE_i[f, c, nu] = sum_o dE/d(V_c E)[o] V[nu, o, f] (padding stays zero), stored twice:
  // genv as [f][c][nu] and genv_t as [f][nu][c], so that the per-pair reductions over either
  // index are plain vector sums (no horizontal sums per pair)
  void environment_gradient(const InteractionT<T> &in, const T *gcomp, T *genv, T *genv_t) const
  {
    const int nf = in.n_out, nfi = in.n_in, nsp = in.nsp, cp = comp_pad();
    std::fill(genv_t, genv_t + static_cast<size_t>(nfi) * nsp * cp, T(0));
    for (int f = 0; f < nfi; f++)
      for (int cc = 0; cc < n_comp_; cc++) {
        const T *g = gcomp + cc * nf;
        T *out = genv + (static_cast<size_t>(f) * n_comp_ + cc) * nsp;
        for (int nu = 0; nu < in.n_sens; nu++) {
          const T *w = in.wt.data() + (static_cast<size_t>(nu) * nfi + f) * nf;
          T acc = T(0);
#pragma omp simd reduction(+ : acc)
          for (int o = 0; o < nf; o++) acc += w[o] * g[o];
          out[nu] = acc;
          genv_t[(static_cast<size_t>(f) * nsp + nu) * cp + cc] = acc;
        }
        for (int nu = in.n_sens; nu < nsp; nu++) out[nu] = T(0);
      }
  }

  // through E_i = sum_p z_j T_c s_nu: to r and u of i's pairs, and to the neighbours' features
  void pair_backward(size_t b, int i, const int64_t *species, const T *genv, const T *genv_t,
                     T *gz_msg)
  {
    const InteractionT<T> &in = blocks_[b].interaction;
    const int nsp = in.nsp, nfi = in.n_in, block = n_comp_ * nsp, cp = comp_pad();
    const int block_t = nsp * cp;
    const bool one_hot = (b == 0);
    const T *z = z_[b].data();
    // nsp <= 64 (check_spec), cp <= 16
    alignas(64) T gst_buf[9 * 64], gst_t_buf[64 * 16], st[9 * 64], gs[64], gt[16];
    for (int64_t q = offsets_[i]; q < offsets_[i + 1]; q++) {
      const int64_t j = second_[q];
      const T *s = sens_[b].data() + q * nsp;
      const T *ds = dsens_[b].data() + q * nsp;
      const T *t = tens_.data() + 9 * q;
      // gst[c, nu] = dE/d(T_c s_nu) = sum_f z_j[f] dE/dE_i[f, c, nu]
      const T *gst = gst_buf, *gst_t = gst_t_buf;
      if (one_hot) {
        gst = genv + static_cast<size_t>(species[j]) * block;
        gst_t = genv_t + static_cast<size_t>(species[j]) * block_t;
      } else {
        std::fill(gst_buf, gst_buf + block, T(0));
        std::fill(gst_t_buf, gst_t_buf + block_t, T(0));
        const T *zj = z + j * nfi;
        for (int f = 0; f < nfi; f++) {
          const T zf = zj[f];
          const T *g = genv + static_cast<size_t>(f) * block;
          const T *gt_f = genv_t + static_cast<size_t>(f) * block_t;
#pragma omp simd
          for (int k = 0; k < block; k++) gst_buf[k] += zf * g[k];
#pragma omp simd
          for (int k = 0; k < block_t; k++) gst_t_buf[k] += zf * gt_f[k];
        }
      }
      if (gz_msg) {
        for (int cc = 0; cc < n_comp_; cc++)
#pragma omp simd
          for (int nu = 0; nu < nsp; nu++) st[cc * nsp + nu] = t[cc] * s[nu];
        T *gj = gz_msg + j * nfi;
        for (int f = 0; f < nfi; f++) {
          const T *g = genv + static_cast<size_t>(f) * block;
          T acc = T(0);
#pragma omp simd reduction(+ : acc)
          for (int k = 0; k < block; k++) acc += g[k] * st[k];
          gj[f] += acc;
        }
      }
      // dE/ds_nu = sum_c gst T_c, dE/dT_c = sum_nu gst s_nu, dE/dr = sum_nu dE/ds_nu ds_nu/dr
      std::fill(gs, gs + nsp, T(0));
      std::fill(gt, gt + cp, T(0));
      for (int cc = 0; cc < n_comp_; cc++) {
        const T *row = gst + cc * nsp;
        const T tc = t[cc];
#pragma omp simd
        for (int nu = 0; nu < nsp; nu++) gs[nu] += row[nu] * tc;
      }
      for (int nu = 0; nu < in.n_sens; nu++) {
        const T *row = gst_t + nu * cp;
        const T snu = s[nu];
#pragma omp simd
        for (int cc = 0; cc < cp; cc++) gt[cc] += row[cc] * snu;
      }
      T gr = T(0);
#pragma omp simd reduction(+ : gr)
      for (int nu = 0; nu < nsp; nu++) gr += gs[nu] * ds[nu];
      g_r_[q] += gr;
      tensor_backward(gt, u_.data() + 3 * q, g_u_.data() + 3 * q);
    }
  }

  // dE/du from dE/dT for T = (1, u, xx - tr, xy, xz, yy - tr, yz), tr = |u|^2 / 3
  void tensor_backward(const T *gt, const T *u, T *gu) const
  {
    if (order_ == TensorOrder::Scalar) return;
    gu[0] += gt[1], gu[1] += gt[2], gu[2] += gt[3];
    if (order_ != TensorOrder::Quadrupole) return;
    const T gtr = -(gt[4] + gt[7]) * T(2) / T(3);
    gu[0] += T(2) * gt[4] * u[0] + gt[5] * u[1] + gt[6] * u[2] + gtr * u[0];
    gu[1] += gt[5] * u[0] + T(2) * gt[7] * u[1] + gt[8] * u[2] + gtr * u[1];
    gu[2] += gt[6] * u[0] + gt[8] * u[1] + gtr * u[2];
  }

  // (dE/dr, dE/du) -> dE/d(x_second - x_first) in the caller's pair order
  void pair_vector_gradient(double *grad) const
  {
    const int64_t n = static_cast<int64_t>(r_.size());
#pragma omp parallel for num_threads(n_threads_) schedule(static)
    for (int64_t q = 0; q < n; q++) {
      const T *u = u_.data() + 3 * q, *gu = g_u_.data() + 3 * q;
      const T r = r_[q];
      const T ug = u[0] * gu[0] + u[1] * gu[1] + u[2] * gu[2];
      double *out = grad + 3 * order_list_[q];
      for (int a = 0; a < 3; a++) {
        const T g_coord = g_r_[q] * u[a] + (gu[a] - u[a] * ug) / r;
        out[a] = -static_cast<double>(g_coord);    // coord = -vec
      }
    }
  }
};

}    // namespace

void check_spec(const ModelSpec &spec)
{
  require(spec.n_types >= 1, "model has no types");
  require(!spec.blocks.empty(), "model has no interaction layers");
  require(spec.head.size() == spec.blocks.size() + 1,
          "energy head: need one layer per feature level (" +
              std::to_string(spec.blocks.size() + 1) + "), got " + std::to_string(spec.head.size()));
  int n_in = spec.n_types;
  for (size_t b = 0; b < spec.blocks.size(); b++) {
    const BlockSpec &blk = spec.blocks[b];
    const InteractionSpec &in = blk.interaction;
    const std::string name = "interaction layer " + std::to_string(b);
    const int nf = in.n_out;
    require(in.n_in == n_in, name + ": input width does not match the previous layer");
    require(in.n_sens >= 1 && in.n_sens <= 64, name + ": 1 to 64 sensitivities supported");
    require(nf >= 1 && n_in >= 1, name + ": empty layer");
    require(in.mu.size() == static_cast<size_t>(in.n_sens) &&
                in.sigma.size() == static_cast<size_t>(in.n_sens),
            name + ": sensitivity mu/sigma shape");
    require(in.int_weights.size() == static_cast<size_t>(in.n_sens) * nf * n_in,
            name + ": int_weights shape");
    require(in.cutoff > 0 && in.cutoff == spec.blocks[0].interaction.cutoff,
            name + ": cutoff must be positive and the same in every layer");
    if (spec.order != TensorOrder::Scalar)
      require(in.vecscales.size() == static_cast<size_t>(nf), name + ": vecscales shape");
    if (spec.order == TensorOrder::Quadrupole)
      require(in.quadscales.size() == static_cast<size_t>(nf), name + ": quadscales shape");
    check_linear(in.selfint, n_in, nf, true, name + " selfint");
    check_linear(blk.res, nf, nf, true, name + " res_layer");
    if (blk.adjust.n_out != 0)
      check_linear(blk.adjust, n_in, nf, false, name + " adjust_layer");
    else
      require(n_in == nf, name + ": no adjust_layer but the width changes");
    require(blk.atom_base.size() == blk.atom_res.size(), name + ": atom layers incomplete");
    for (size_t k = 0; k < blk.atom_base.size(); k++) {
      check_linear(blk.atom_base[k], nf, nf, true, name + " atom layer " + std::to_string(k));
      check_linear(blk.atom_res[k], nf, nf, true, name + " atom res " + std::to_string(k));
    }
    n_in = nf;
  }
  int width = spec.n_types;
  for (size_t l = 0; l < spec.head.size(); l++) {
    check_linear(spec.head[l], width, 1, l > 0, "energy head layer " + std::to_string(l));
    if (l < spec.blocks.size()) width = spec.blocks[l].interaction.n_out;
  }
  if (spec.prior.present) {
    const size_t nn = static_cast<size_t>(spec.n_types) * spec.n_types;
    require(spec.prior.n_types == spec.n_types && spec.prior.a.size() == nn &&
                spec.prior.t.size() == nn && spec.prior.c.size() == nn,
            "prior: tables must be n_types x n_types");
  }
}

std::unique_ptr<Evaluator> make_evaluator(const ModelSpec &spec, bool single_precision)
{
  check_spec(spec);
  if (single_precision) return std::make_unique<EvaluatorT<float>>(spec);
  return std::make_unique<EvaluatorT<double>>(spec);
}

}    // namespace hipcg_native
