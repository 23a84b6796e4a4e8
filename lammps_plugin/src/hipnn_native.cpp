/* ----------------------------------------------------------------------
   Native HIP-NN / HIP-NN-TS evaluator (see hipnn_native.h).

   The math is hippynn 0.1.3's:

   sensitivity  s_nu(r) = exp(-(1/r - 1/mu_nu)^2 sigma_nu^2 / 2) cos^2(pi r / (2 r_c))
   tensors      T(p) = (1, u, traceless u u^T in hippynn's 5 components xx xy xz yy yz),
                u = (x_first - x_second) / r  (hippynn's pair_coord sign)
   environment  E_i[c, nu, f] = sum_{pairs p = (i, j)} s_nu T_c z_j[f]
   interaction  h_i = V_0 E_i + vecscales |V_vec E_i| + quadscales |V_quad E_i| + W z_i + b,
                |.| with hippynn's cusp regulariser under the square root
   blocks       ResNetWrapper: y = R softplus(h) + r_b + (A z or z)
   head         e_i = sum_levels w_l . z_l[i] (+ b_l), level 0 = the one-hot input
   prior        e_i += sum_{pairs (i, j)} c/2 exp(a (t - r))

   The backward pass is the exact reverse of those steps.

   Layout (issue 13: fast on one core):
   - pairs are sorted by first node and then by the neighbour's species (CSR segments); per-pair
     quantities (r, u, tensor components, cutoff, sensitivities, gradients) are structures of
     arrays over the sorted pairs, so the per-pair loops run over whole SIMD vectors of pairs;
   - a one-hot input (the first block) makes the environment sum per pair just s_nu T_c: the
     forward sums s_nu(k) T(k) into registers (tensor components as vector lanes), the backward
     works on vectors of pairs (dE/dr and dE/dT need no horizontal sums);
   - every dense layer (interaction weights, self term, residual and atom layers, forward and
     backward) is one register-blocked matrix-matrix product over all nodes (gemm below);
   - sensitivities are computed once per pair and kept for both passes while they fit in a
     core's L2 cache, otherwise recomputed per node where they are used;
   - one OpenMP parallel region per evaluation (orphaned `omp for` in each phase), buffers kept
     between calls.  Results do not depend on the thread count beyond the order in which the
     messages of blocks > 0 to neighbours' features are summed.
------------------------------------------------------------------------- */

#include "hipnn_native.h"

#include "hipnn_math.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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

// ------------------------------------------------------------------ SIMD and GEMM kernels
// GCC/Clang vector extensions: one register of the widest vector unit the build targets
// (-march=native), plain element-wise code otherwise; no intrinsics, no BLAS.
#if defined(__AVX512F__)
constexpr int VBYTES = 64;
#elif defined(__AVX__)
constexpr int VBYTES = 32;
#else
constexpr int VBYTES = 16;
#endif
// most accumulator vectors per GEMM row (32 vector registers with AVX-512, 16 otherwise)
constexpr int GEMM_NV = VBYTES == 64 ? 4 : 2;
constexpr int GEMM_MR = 6;    // rows per register tile
// the sensitivities of all pairs are kept between the passes up to this size (see allocate)
constexpr size_t SENS_KEEP_BYTES = 1 << 20;

template <typename T> struct VecOf;
template <> struct VecOf<float> {
  typedef float type __attribute__((vector_size(VBYTES)));
};
template <> struct VecOf<double> {
  typedef double type __attribute__((vector_size(VBYTES)));
};
template <typename T> using Vec = typename VecOf<T>::type;
template <typename T> constexpr int lanes() { return VBYTES / static_cast<int>(sizeof(T)); }

template <typename T> inline Vec<T> vload(const T *p)
{
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T> inline void vstore(T *p, const Vec<T> &v) { std::memcpy(p, &v, sizeof v); }
template <typename T> inline Vec<T> vsplat(T x) { return Vec<T>{} + x; }

inline long round_up(long n, long m) { return (n + m - 1) / m * m; }

// C = init + A B, row-major with leading dimensions, init = (acc ? C : 0) + add + bias (add and
// bias optional: add a matrix like C, bias a row broadcast over the rows).  Every element is
// init plus its products summed in k order, however the rows are blocked or threaded, so the
// results do not depend on the thread count.
template <typename T> struct GemmArgs {
  int K;
  const T *A;
  long lda;
  const T *B;
  long ldb;
  T *C;
  long ldc;
  const T *bias;
  const T *add;
  long ldadd;
  bool acc;
};

template <typename T, int MR, int NV> void gemm_tile(const GemmArgs<T> &g, long i0, int n0)
{
  constexpr int w = lanes<T>();
  Vec<T> c[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
      const long row = i0 + i;
      const int col = n0 + v * w;
      Vec<T> x = g.acc ? vload(g.C + row * g.ldc + col) : Vec<T>{};
      if (g.add) x += vload(g.add + row * g.ldadd + col);
      if (g.bias) x += vload(g.bias + col);
      c[i][v] = x;
    }
  const T *a = g.A + i0 * g.lda;
  const T *b = g.B + n0;
  for (int k = 0; k < g.K; k++) {
    Vec<T> bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) bv[v] = vload(b + k * g.ldb + v * w);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      const Vec<T> av = vsplat(a[i * g.lda + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) c[i][v] += av * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) vstore(g.C + (i0 + i) * g.ldc + n0 + v * w, c[i][v]);
}

template <typename T> void gemm_scalar(const GemmArgs<T> &g, long i0, int mr, int n0, int n1)
{
  for (long i = i0; i < i0 + mr; i++)
    for (int n = n0; n < n1; n++) {
      T x = g.acc ? g.C[i * g.ldc + n] : T(0);
      if (g.add) x += g.add[i * g.ldadd + n];
      if (g.bias) x += g.bias[n];
      for (int k = 0; k < g.K; k++) x += g.A[i * g.lda + k] * g.B[k * g.ldb + n];
      g.C[i * g.ldc + n] = x;
    }
}

template <typename T, int MR> void gemm_rows(const GemmArgs<T> &g, long i0, int N)
{
  constexpr int w = lanes<T>();
  int n = 0;
  for (; n + GEMM_NV * w <= N; n += GEMM_NV * w) gemm_tile<T, MR, GEMM_NV>(g, i0, n);
  const int nv = (N - n) / w;
  if (nv >= 3 && GEMM_NV > 3) gemm_tile<T, MR, 3>(g, i0, n);
  else if (nv == 2 && GEMM_NV > 2) gemm_tile<T, MR, 2>(g, i0, n);
  else if (nv == 1) gemm_tile<T, MR, 1>(g, i0, n);
  n += nv * w;
  if (n < N) gemm_scalar(g, i0, MR, n, N);
}

template <typename T> void gemm_block(const GemmArgs<T> &g, long i0, int mr, int N)
{
  switch (mr) {
    case 6: gemm_rows<T, 6>(g, i0, N); break;
    case 5: gemm_rows<T, 5>(g, i0, N); break;
    case 4: gemm_rows<T, 4>(g, i0, N); break;
    case 3: gemm_rows<T, 3>(g, i0, N); break;
    case 2: gemm_rows<T, 2>(g, i0, N); break;
    default: gemm_rows<T, 1>(g, i0, N); break;
  }
}

// M x N result; parallel: the row tiles are shared out by an orphaned `omp for` (call it from
// inside the evaluation's parallel region, by every thread); otherwise this thread does all
template <typename T>
void gemm(bool parallel, long M, int N, int K, const T *A, long lda, const T *B, long ldb, T *C,
          long ldc, const T *bias = nullptr, const T *add = nullptr, long ldadd = 0,
          bool acc = false)
{
  const GemmArgs<T> g{K, A, lda, B, ldb, C, ldc, bias, add, ldadd, acc};
  const long n_tiles = (M + GEMM_MR - 1) / GEMM_MR;
  if (parallel) {
#pragma omp for schedule(static)
    for (long t = 0; t < n_tiles; t++)
      gemm_block(g, t * GEMM_MR, static_cast<int>(std::min<long>(GEMM_MR, M - t * GEMM_MR)), N);
  } else {
    for (long t = 0; t < n_tiles; t++)
      gemm_block(g, t * GEMM_MR, static_cast<int>(std::min<long>(GEMM_MR, M - t * GEMM_MR)), N);
  }
}

// Et[nu][:] = sum_k s_nu(k) T(k)[:] over the pairs k < L: s sensitivity-major (row nu at
// s + nu * ld), T(k) the pair-major tensor components (tp values from tpm + k * tp, NVC vectors).
// NB rows of Et stay in registers; out: NB x tp.
template <typename T, int NB, int NVC>
void env_kernel(long L, const T *s, long ld, const T *tpm, int tp, T *out)
{
  constexpr int w = lanes<T>();
  Vec<T> acc[NB][NVC];
#pragma GCC unroll 16
  for (int j = 0; j < NB; j++)
#pragma GCC unroll 4
    for (int v = 0; v < NVC; v++) acc[j][v] = Vec<T>{};
  for (long k = 0; k < L; k++) {
    Vec<T> t[NVC];
#pragma GCC unroll 4
    for (int v = 0; v < NVC; v++) t[v] = vload(tpm + k * tp + v * w);
#pragma GCC unroll 16
    for (int j = 0; j < NB; j++) {
      const Vec<T> sv = vsplat(s[j * ld + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NVC; v++) acc[j][v] += sv * t[v];
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NB; j++)
#pragma GCC unroll 4
    for (int v = 0; v < NVC; v++) vstore(out + j * tp + v * w, acc[j][v]);
}

template <typename T>
void env_generic(int nb, long L, const T *s, long ld, const T *tpm, int tp, T *out)
{
  std::fill(out, out + nb * tp, T(0));
  for (long k = 0; k < L; k++)
    for (int j = 0; j < nb; j++) {
      const T sj = s[j * ld + k];
#pragma omp simd
      for (int c = 0; c < tp; c++) out[j * tp + c] += sj * tpm[k * tp + c];
    }
}

template <typename T, int NVC>
void env_rows(int n_rows, long L, const T *s, long ld, const T *tpm, int tp, T *out)
{
  // rows in blocks of 4 (the caller's s has rows up to n_rows rounded up to 4, zero-filled)
  constexpr int MAXB = NVC == 1 ? 16 : 12;
  for (int j0 = 0; j0 < n_rows; j0 += MAXB) {
    const int nb = std::min(MAXB, static_cast<int>(round_up(n_rows - j0, 4)));
    const T *sj = s + j0 * ld;
    T *o = out + j0 * tp;
    switch (nb) {
      case 4: env_kernel<T, 4, NVC>(L, sj, ld, tpm, tp, o); break;
      case 8: env_kernel<T, 8, NVC>(L, sj, ld, tpm, tp, o); break;
      case 12: env_kernel<T, 12, NVC>(L, sj, ld, tpm, tp, o); break;
      default:
        if constexpr (MAXB == 16) env_kernel<T, 16, NVC>(L, sj, ld, tpm, tp, o);
        break;
    }
  }
}

// out[nu][c] (n_rows rounded up to 4 rows of tp) = sum over L pairs of s_nu T_c
template <typename T>
void env_accumulate(int n_rows, long L, const T *s, long ld, const T *tpm, int tp, T *out)
{
  const int nvc = tp / lanes<T>();
  if (nvc == 1) env_rows<T, 1>(n_rows, L, s, ld, tpm, tp, out);
  else if (nvc == 2) env_rows<T, 2>(n_rows, L, s, ld, tpm, tp, out);
  else env_generic(static_cast<int>(round_up(n_rows, 4)), L, s, ld, tpm, tp, out);
}

// The reverse of env_kernel for one-hot inputs, vectorised over pairs (sensitivity-major
// s and ds, ld ls; T_c at tens[c * ldt + k]; Lp a multiple of the vector width):
//   gr(k) = sum_nu ds_nu(k) sum_c G[c][nu] T_c(k),  gt_c(k) = sum_nu G[c][nu] s_nu(k)
template <typename T, int NC>
void pair_grad_kernel(long Lp, int ns, const T *s, const T *ds, long ls, const T *tens, long ldt,
                      const T *G, long ldg, T *gr, T *gt, long ldgt)
{
  constexpr int w = lanes<T>();
  for (long k = 0; k < Lp; k += w) {
    Vec<T> t[NC], at[NC], ar = Vec<T>{};
#pragma GCC unroll 16
    for (int c = 0; c < NC; c++) {
      t[c] = vload(tens + c * ldt + k);
      at[c] = Vec<T>{};
    }
    for (int nu = 0; nu < ns; nu++) {
      const Vec<T> sv = vload(s + nu * ls + k), dv = vload(ds + nu * ls + k);
      Vec<T> gs = Vec<T>{};
#pragma GCC unroll 16
      for (int c = 0; c < NC; c++) {
        const T gcn = G[c * ldg + nu];
        gs += gcn * t[c];
        at[c] += gcn * sv;
      }
      ar += gs * dv;
    }
    vstore(gr + k, ar);
#pragma GCC unroll 16
    for (int c = 0; c < NC; c++) vstore(gt + c * ldgt + k, at[c]);
  }
}

template <typename T>
void pair_grad_generic(int nc, long Lp, int ns, const T *s, const T *ds, long ls, const T *tens,
                       long ldt, const T *G, long ldg, T *gr, T *gt, long ldgt)
{
  for (long k = 0; k < Lp; k++) {
    T ar = T(0);
    for (int nu = 0; nu < ns; nu++) {
      T gs = T(0);
      for (int c = 0; c < nc; c++) gs += G[c * ldg + nu] * tens[c * ldt + k];
      ar += gs * ds[nu * ls + k];
    }
    gr[k] = ar;
    for (int c = 0; c < nc; c++) {
      T a = T(0);
      for (int nu = 0; nu < ns; nu++) a += G[c * ldg + nu] * s[nu * ls + k];
      gt[c * ldgt + k] = a;
    }
  }
}

template <typename T> struct LinearT {
  int n_in = 0, n_out = 0;
  std::vector<T> w, b;    // W (n_out x n_in) as torch stores it, the backward's B matrix
  std::vector<T> wt;      // W^T (n_in x n_out): the forward's B matrix
  LinearT() = default;
  explicit LinearT(const Linear &l) : n_in(l.n_in), n_out(l.n_out), w(cast<T>(l.w)), b(cast<T>(l.b))
  {
    wt.resize(w.size());
    for (int o = 0; o < n_out; o++)
      for (int i = 0; i < n_in; i++)
        wt[static_cast<size_t>(i) * n_out + o] = w[static_cast<size_t>(o) * n_in + i];
  }
  bool empty() const { return n_out == 0; }
  const T *bias() const { return b.empty() ? nullptr : b.data(); }
  // Y = X W^T + b (+ add) for M rows
  void forward(long M, const T *X, T *Y, const T *add = nullptr) const
  {
    gemm(true, M, n_out, n_in, X, n_in, wt.data(), n_out, Y, n_out, bias(), add, n_out);
  }
  // GX (=|+=) GY W for M rows (+ add)
  void backward(long M, const T *GY, T *GX, bool acc, const T *add = nullptr) const
  {
    gemm(true, M, n_in, n_out, GY, n_out, w.data(), n_in, GX, n_in, static_cast<const T *>(nullptr), add,
         n_in, acc);
  }
};

template <typename T> struct InteractionT {
  int n_in, n_out, n_sens, n_comp;
  int nsp;    // n_sens rounded up to math_chunk (a multiple of the vector width)
  int kdim;   // n_in * nsp: the environment's row length, layout [f][nu]
  std::vector<T> inv_mu, sigma2, vecscales, quadscales;    // 1/mu and sigma^2 (nsp, padded)
  std::vector<T> wint;     // (kdim x n_out): row f * nsp + nu = hippynn's W[nu, :, f], pads 0
  std::vector<T> wint_t;   // (n_out x kdim): its transpose
  LinearT<T> selfint;
  T cutoff, cusp;

  InteractionT(const InteractionSpec &s, TensorOrder order)
      : n_in(s.n_in), n_out(s.n_out), n_sens(s.n_sens), n_comp(n_components(order)),
        nsp(static_cast<int>(round_up(s.n_sens, math_chunk<T>()))), kdim(s.n_in * nsp),
        vecscales(cast<T>(s.vecscales)), quadscales(cast<T>(s.quadscales)), selfint(s.selfint),
        cutoff(T(s.cutoff)), cusp(T(s.cusp_reg))
  {
    inv_mu.assign(nsp, T(0));
    sigma2.assign(nsp, T(0));
    for (int nu = 0; nu < n_sens; nu++) {
      inv_mu[nu] = T(1) / T(s.mu[nu]);
      sigma2[nu] = T(s.sigma[nu]) * T(s.sigma[nu]);
    }
    wint.assign(static_cast<size_t>(kdim) * n_out, T(0));
    wint_t.assign(static_cast<size_t>(kdim) * n_out, T(0));
    for (int nu = 0; nu < n_sens; nu++)
      for (int o = 0; o < n_out; o++)
        for (int f = 0; f < n_in; f++) {
          const T v = T(s.int_weights[(static_cast<size_t>(nu) * n_out + o) * n_in + f]);
          wint[(static_cast<size_t>(f) * nsp + nu) * n_out + o] = v;
          wint_t[static_cast<size_t>(o) * kdim + f * nsp + nu] = v;
        }
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

// per-thread scratch of the per-node pair loops
template <typename T> struct Scratch {
  std::vector<T> s, ds;    // one node's sensitivities (sensitivity-major, row stride ls) when
                           // they are not kept for all pairs
  long ls = 0;
  std::vector<T> et, gr, gt, st, zt, envf, g2, g2t, gst, gzm;
  std::vector<T> gz_msg;    // messages to neighbours' features (blocks > 0)
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
    allocate();
    // one parallel region for the whole evaluation: every phase below is an orphaned `omp for`
#pragma omp parallel num_threads(n_threads_)
    {
      geometry(g);
      forward();
      energies(g.species, node_energy);
      backward(g.species, n_seed, grad);
    }
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

  // graph, pairs sorted by first node and then by the second node's species (CSR, segment
  // (i, t) = pairs seg_[i * n_types + t] .. seg_[i * n_types + t + 1]): pair q of the sorted
  // list is pair order_list_[q] of the caller's list
  int n_nodes_ = 0;
  int64_t n_pairs_ = 0, pp_ = 0;    // pairs and the padded length of the per-pair SoA arrays
  long max_node_pairs_ = 0;
  std::vector<int64_t> seg_, order_list_, second_, fill_;
  // per sorted pair, structure of arrays (stride pp_; the padding holds r = 1, the rest 0):
  std::vector<T> r_, cut_, dcut_, u_, tens_;    // u: 3 rows, tens: 9 rows
  std::vector<T> tens_pm_;                      // tensor components pair-major, tp_ per pair
  int tp_ = 0;                                  // n_comp_ rounded up to the vector width
  std::vector<std::vector<T>> sens_, dsens_;    // per block: nsp rows (pads zero) of stride pp_
  bool keep_sens_ = true;    // sensitivities of all pairs kept (small graphs), else per node
  std::vector<T> g_r_, g_u_;                    // dE/dr and dE/du (3 rows)
  std::vector<T> z0_;                           // one-hot input features, n_nodes x n_types
  std::vector<BlockCache<T>> cache_;
  std::vector<T> env_, act_, gbuf_[2], ga_, gh_, gcomp_, genv_;
  std::vector<Scratch<T>> scratch_;

  const T *features(size_t b) const { return b == 0 ? z0_.data() : cache_[b - 1].y.back().data(); }

  void sort_pairs(const Graph &g)
  {
    n_nodes_ = g.n_nodes;
    n_pairs_ = g.n_pairs;
    const int nt = n_types_;
    for (int i = 0; i < n_nodes_; i++)
      if (g.species[i] < 0 || g.species[i] >= nt)
        throw std::out_of_range("node species outside the model's types");
    seg_.assign(static_cast<size_t>(n_nodes_) * nt + 1, 0);
    // segment key of a pair: first node, then the second node's species (one type: first)
    auto key = [&](int64_t p) { return nt == 1 ? g.first[p] : g.first[p] * nt + g.species[g.second[p]]; };
    bool sorted = true;    // LAMMPS lists a bead's pairs together: usually nothing to reorder
    int64_t last = 0;
    for (int64_t p = 0; p < g.n_pairs; p++) {
      if (g.first[p] < 0 || g.first[p] >= n_nodes_ || g.second[p] < 0 || g.second[p] >= n_nodes_)
        throw std::out_of_range("pair index outside the graph's nodes");
      const int64_t k = key(p);
      sorted = sorted && k >= last;
      last = k;
      seg_[k + 1]++;
    }
    const size_t n_seg = static_cast<size_t>(n_nodes_) * nt;
    for (size_t k = 0; k < n_seg; k++) seg_[k + 1] += seg_[k];
    order_list_.resize(g.n_pairs);
    second_.resize(g.n_pairs);
    // the pair vectors go straight to their sorted place, negated (hippynn: x_first - x_second)
    // and cast to the model's precision as the TorchScript path has them, into the rows of u_
    pp_ = round_up(n_pairs_, math_chunk<T>()) + math_chunk<T>();    // a multiple of lanes<T>()
    u_.resize(3 * pp_);
    const int64_t pp = pp_;
    T *c0 = u_.data(), *c1 = c0 + pp, *c2 = c1 + pp;
    if (sorted) {
      const double *v = g.vec;
      for (int64_t p = 0; p < g.n_pairs; p++) {
        order_list_[p] = p;
        second_[p] = g.second[p];
        c0[p] = -T(v[3 * p]), c1[p] = -T(v[3 * p + 1]), c2[p] = -T(v[3 * p + 2]);
      }
    } else {
      fill_.assign(seg_.begin(), seg_.end() - 1);
      for (int64_t p = 0; p < g.n_pairs; p++) {
        const int64_t q = fill_[key(p)]++;
        order_list_[q] = p;
        second_[q] = g.second[p];
        const double *v = g.vec + 3 * p;
        c0[q] = -T(v[0]), c1[q] = -T(v[1]), c2[q] = -T(v[2]);
      }
    }
    max_node_pairs_ = 0;
    for (int i = 0; i < n_nodes_; i++)
      max_node_pairs_ = std::max<long>(max_node_pairs_, seg_[(i + 1) * nt] - seg_[i * nt]);
  }

  // every buffer of the evaluation, sized before the parallel region (no allocation inside;
  // capacities persist between calls)
  void allocate()
  {
    const int w = math_chunk<T>();
    tp_ = static_cast<int>(round_up(n_comp_, lanes<T>()));
    r_.assign(pp_, T(1));
    cut_.assign(pp_, T(0));
    dcut_.assign(pp_, T(0));
    // entries past n_pairs_ are read by whole-vector loops whose extra lanes are discarded:
    // they only need to be finite (zero from the first resize or values of an earlier call)
    tens_.resize(9 * pp_);
    tens_pm_.resize(pp_ * tp_);
    g_r_.assign(pp_, T(0));
    g_u_.assign(3 * pp_, T(0));
    const size_t nn = n_nodes_;
    z0_.assign(nn * n_types_, T(0));
    const size_t nb = blocks_.size();
    cache_.resize(nb);
    sens_.resize(nb);
    dsens_.resize(nb);
    // Sensitivities and their derivatives of every pair, computed once and read by the forward
    // and the backward pass, while they fit in a core's L2 cache; beyond that each node's are
    // computed where they are used (twice: forward and backward), which costs exp calls
    // but no memory traffic.
    size_t sens_bytes = 0;
    for (size_t b = 0; b < nb; b++)
      sens_bytes += 2 * sizeof(T) * static_cast<size_t>(blocks_[b].interaction.nsp) * pp_;
    keep_sens_ = sens_bytes <= SENS_KEEP_BYTES;
    size_t env_size = 0, width = n_types_, gmax = 0, genv_size = 0;
    const long lseg = max_node_pairs_ + static_cast<long>(n_types_) * w;    // segment padding
    for (auto &sc : scratch_) sc.gz_msg.clear();
    scratch_.resize(n_threads_);
    for (size_t b = 0; b < nb; b++) {
      const BlockT<T> &blk = blocks_[b];
      const InteractionT<T> &in = blk.interaction;
      const int nf = in.n_out, na = blk.n_atom_layers();
      BlockCache<T> &c = cache_[b];
      if (keep_sens_) {
        sens_[b].resize(static_cast<size_t>(in.nsp) * pp_);
        dsens_[b].resize(static_cast<size_t>(in.nsp) * pp_);
        // the padding rows n_sens .. nsp are read as zero sensitivities
        std::fill(sens_[b].begin() + static_cast<size_t>(in.n_sens) * pp_, sens_[b].end(), T(0));
        std::fill(dsens_[b].begin() + static_cast<size_t>(in.n_sens) * pp_, dsens_[b].end(), T(0));
      }
      c.h_int.resize(nn * nf);
      c.comp.resize(nn * n_comp_ * nf);
      c.norms.resize(nn * 2 * nf);
      c.h_atom.resize(na);
      c.y.resize(na + 1);
      for (auto &v : c.h_atom) v.resize(nn * nf);
      for (auto &v : c.y) v.resize(nn * nf);
      env_size = std::max(env_size, nn * n_comp_ * in.kdim);
      genv_size = std::max(genv_size, nn * n_comp_ * in.kdim);
      width = std::max<size_t>(width, nf);
      gmax = std::max<size_t>(gmax, nn * n_comp_ * nf);
      const size_t block = static_cast<size_t>(n_comp_) * in.nsp;
      for (auto &sc : scratch_) {
        if (!keep_sens_) {
          // fixed row stride, rows n_sens .. nsp never written: they stay zero
          const long ls = round_up(lseg, math_chunk<T>());
          if (sc.ls != ls || sc.s.size() < static_cast<size_t>(in.nsp) * ls) {
            sc.ls = ls;
            sc.s.assign(static_cast<size_t>(in.nsp) * ls, T(0));
            sc.ds.assign(static_cast<size_t>(in.nsp) * ls, T(0));
          }
        }
        sc.et.resize(std::max(sc.et.size(), static_cast<size_t>(in.nsp) * tp_));
        sc.gr.resize(std::max<size_t>(sc.gr.size(), lseg));
        sc.gt.resize(std::max(sc.gt.size(), static_cast<size_t>(lseg) * 9));
        if (b > 0) {
          const size_t lm = max_node_pairs_ + 1;
          sc.st.resize(std::max(sc.st.size(), lm * block));
          sc.zt.resize(std::max(sc.zt.size(), lm * in.n_in));
          sc.envf.resize(std::max(sc.envf.size(), in.n_in * block));
          sc.g2.resize(std::max(sc.g2.size(), in.n_in * block));
          sc.g2t.resize(std::max(sc.g2t.size(), in.n_in * block));
          sc.gst.resize(std::max(sc.gst.size(), lm * block));
          sc.gzm.resize(std::max(sc.gzm.size(), lm * in.n_in));
          sc.gz_msg.resize(std::max(sc.gz_msg.size(), nn * in.n_in));
        }
      }
    }
    env_.resize(env_size);
    act_.resize(nn * width);
    gbuf_[0].resize(nn * width);
    gbuf_[1].resize(nn * width);
    ga_.resize(nn * width);
    gh_.resize(nn * width);
    gcomp_.resize(gmax);
    genv_.resize(genv_size);
  }

  // distances, unit vectors and tensor components, in the model's precision as the
  // TorchScript path has them (the float64 pair vector is cast first)
  void geometry(const Graph &g)
  {
    const int64_t n = g.n_pairs, pp = pp_;
    const int tp = tp_;
    T *u0 = u_.data(), *u1 = u0 + pp, *u2 = u1 + pp, *r_out = r_.data();
    T *t0 = tens_.data(), *t1 = t0 + pp, *t2 = t1 + pp, *t3 = t2 + pp, *t4 = t3 + pp,
      *t5 = t4 + pp, *t6 = t5 + pp, *t7 = t6 + pp, *t8 = t7 + pp;
#pragma omp for simd schedule(simd : static)
    for (int64_t q = 0; q < n; q++) {
      const T c0 = u0[q], c1 = u1[q], c2 = u2[q];    // x_first - x_second (sort_pairs)
      const T r = std::sqrt(c0 * c0 + c1 * c1 + c2 * c2);
      const T e0 = c0 / r, e1 = c1 / r, e2 = c2 / r;
      r_out[q] = r;
      u0[q] = e0, u1[q] = e1, u2[q] = e2;
      const T tr = (e0 * e0 + e1 * e1 + e2 * e2) / T(3);
      t0[q] = T(1), t1[q] = e0, t2[q] = e1, t3[q] = e2;
      t4[q] = e0 * e0 - tr, t5[q] = e0 * e1, t6[q] = e0 * e2, t7[q] = e1 * e1 - tr, t8[q] = e1 * e2;
    }
    // pair-major copy for the forward environment sums (entries n_comp_ .. tp_ stay zero)
    T *pm = tens_pm_.data();
    const int nc = n_comp_;
#pragma omp for schedule(static)
    for (int64_t q = 0; q < n; q++) {
      T *row = pm + q * tp;
      if (nc == 9) {
        row[0] = T(1), row[1] = u0[q], row[2] = u1[q], row[3] = u2[q], row[4] = t4[q];
        row[5] = t5[q], row[6] = t6[q], row[7] = t7[q], row[8] = t8[q];
      } else {
        for (int c = 0; c < nc; c++) row[c] = t0[c * pp + q];
      }
    }
#pragma omp for schedule(static)
    for (int i = 0; i < n_nodes_; i++) z0_[static_cast<size_t>(i) * n_types_ + g.species[i]] = T(1);
    // every layer has the same cutoff (hippynn's dist_hard_max, the metadata cutoff); the
    // padding keeps cut = dcut = 0.  Then the sensitivities of every block, sensitivity-major.
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t chunk = round_up((n + nth - 1) / nth, math_chunk<T>());
    const int64_t q0 = std::min<int64_t>(n, tid * chunk), q1 = std::min<int64_t>(n, q0 + chunk);
    if (q1 > q0) {
      cos2_cutoff(r_.data() + q0, static_cast<long>(q1 - q0), blocks_[0].interaction.cutoff,
                  cut_.data() + q0, dcut_.data() + q0);
      const long len = round_up(q1 - q0, math_chunk<T>());    // within pp_
      for (size_t b = 0; keep_sens_ && b < blocks_.size(); b++) {
        const InteractionT<T> &in = blocks_[b].interaction;
        sensitivity_columns(r_.data() + q0, cut_.data() + q0, dcut_.data() + q0, len,
                            in.inv_mu.data(), in.sigma2.data(), in.n_sens, static_cast<long>(pp),
                            sens_[b].data() + q0, dsens_[b].data() + q0);
      }
    }
#pragma omp barrier
  }

  // ---------------------------------------------------------------- forward

  void forward()
  {
    for (size_t b = 0; b < blocks_.size(); b++) forward_block(b);
  }

  void forward_block(size_t b)
  {
    const BlockT<T> &blk = blocks_[b];
    const InteractionT<T> &in = blk.interaction;
    BlockCache<T> &c = cache_[b];
    const int nf = in.n_out, n_atom = blk.n_atom_layers(), nc = n_comp_;
    const long nn = n_nodes_;
    const T *z = features(b);
    Scratch<T> &sc = scratch_[omp_get_thread_num()];
    // environments: env_[i][c][f * nsp + nu]
#pragma omp for schedule(dynamic, 8)
    for (int i = 0; i < n_nodes_; i++) {
      if (b == 0) environment_onehot(b, in, i, sc);
      else environment_dense(b, in, i, z, sc);
    }
    // component outputs V_c E_i: one GEMM over all nodes and components
    gemm(true, nn * nc, nf, in.kdim, env_.data(), in.kdim, in.wint.data(), nf, c.comp.data(), nf);
    // self term W z + b into h, then the norms
    in.selfint.forward(nn, z, c.h_int.data());
#pragma omp for schedule(static)
    for (int i = 0; i < n_nodes_; i++) interaction_output(in, c, i);
    // ResNetWrapper around the interaction: y = R softplus(h) + r_b + (A z | z)
    // h is replaced by softplus'(h): all the backward pass needs of it
    if (blk.adjust.empty()) {
      blk.res.forward(nn, act_.data(), c.y[0].data(), z);
    } else {
      blk.adjust.forward(nn, z, ga_.data());
      blk.res.forward(nn, act_.data(), c.y[0].data(), ga_.data());
    }
    for (int k = 0; k < n_atom; k++) {
      blk.atom_base[k].forward(nn, c.y[k].data(), c.h_atom[k].data());
      softplus_nodes(c.h_atom[k].data(), nf);
      blk.atom_res[k].forward(nn, act_.data(), c.y[k + 1].data(), c.y[k].data());
    }
  }

  // act_ = softplus(h), h = softplus'(h), node rows shared out among the threads
  void softplus_nodes(T *h, int nf)
  {
#pragma omp for schedule(static)
    for (int i = 0; i < n_nodes_; i++) {
      const size_t row = static_cast<size_t>(i) * nf;
      softplus_rows(h + row, act_.data() + row, h + row, nf);
    }
  }

  // s, ds of the L pairs from sorted pair a of block b: row nu at s + nu * ld
  void node_sensitivities(size_t b, int64_t a, long L, Scratch<T> &sc, const T *&s, const T *&ds,
                          long &ld) const
  {
    if (keep_sens_) {
      s = sens_[b].data() + a, ds = dsens_[b].data() + a, ld = static_cast<long>(pp_);
      return;
    }
    const InteractionT<T> &in = blocks_[b].interaction;
    const long lp = round_up(L, math_chunk<T>());
    sensitivity_columns(r_.data() + a, cut_.data() + a, dcut_.data() + a, lp, in.inv_mu.data(),
                        in.sigma2.data(), in.n_sens, sc.ls, sc.s.data(), sc.ds.data());
    // the padding rows read as zero (another block may have more sensitivities)
    for (int nu = in.n_sens; nu < in.nsp; nu++) {
      std::fill(sc.s.data() + nu * sc.ls, sc.s.data() + nu * sc.ls + lp, T(0));
      std::fill(sc.ds.data() + nu * sc.ls, sc.ds.data() + nu * sc.ls + lp, T(0));
    }
    s = sc.s.data(), ds = sc.ds.data(), ld = sc.ls;
  }

  // one-hot input: E_i[c][t * nsp + nu] = sum over i's pairs with a type-t neighbour of T_c s_nu
  void environment_onehot(size_t b, const InteractionT<T> &in, int i, Scratch<T> &sc)
  {
    const int nsp = in.nsp, nc = n_comp_, kd = in.kdim, nt = n_types_, tp = tp_;
    T *env = env_.data() + static_cast<size_t>(i) * nc * kd;
    T *et = sc.et.data();
    for (int t = 0; t < nt; t++) {
      const int64_t a = seg_[i * nt + t], e = seg_[i * nt + t + 1];
      const long L = static_cast<long>(e - a);
      const T *s = nullptr, *ds = nullptr;
      long ld = 0;
      if (L > 0) node_sensitivities(b, a, L, sc, s, ds, ld);
      env_accumulate(in.n_sens, L, s, ld, tens_pm_.data() + a * tp, tp, et);
      for (int cc = 0; cc < nc; cc++) {
        T *row = env + cc * kd + t * nsp;
        for (int nu = 0; nu < in.n_sens; nu++) row[nu] = et[nu * tp + cc];
        for (int nu = in.n_sens; nu < nsp; nu++) row[nu] = T(0);
      }
    }
  }

  // dense input features: E_i[f][c, nu] = sum_k z_j(k)[f] (T_c s_nu)(k) as a GEMM over pairs
  void environment_dense(size_t b, const InteractionT<T> &in, int i, const T *z, Scratch<T> &sc)
  {
    const int nsp = in.nsp, nc = n_comp_, nfi = in.n_in, kd = in.kdim, block = nc * nsp;
    const int64_t a = seg_[static_cast<size_t>(i) * n_types_], e = seg_[static_cast<size_t>(i + 1) * n_types_];
    const long L = static_cast<long>(e - a);
    T *env = env_.data() + static_cast<size_t>(i) * nc * kd;
    if (L == 0) {
      std::fill(env, env + nc * kd, T(0));
      return;
    }
    T *st = sc.st.data(), *zt = sc.zt.data(), *envf = sc.envf.data();
    const T *s = nullptr, *ds = nullptr;
    long ld = 0;
    node_sensitivities(b, a, L, sc, s, ds, ld);
    pair_products(in, a, L, s, ld, st);
    for (long k = 0; k < L; k++) {
      const T *zj = z + second_[a + k] * nfi;
      for (int f = 0; f < nfi; f++) zt[f * L + k] = zj[f];
    }
    gemm(false, nfi, block, static_cast<int>(L), zt, L, st, block, envf, block);
    for (int f = 0; f < nfi; f++)
      for (int cc = 0; cc < nc; cc++)
        std::copy(envf + f * block + cc * nsp, envf + f * block + (cc + 1) * nsp,
                  env + cc * kd + f * nsp);
  }

  // st[k][c * nsp + nu] = T_c s_nu for L pairs from sorted pair a (s: their sensitivities,
  // row stride ld; padding nu give zero)
  void pair_products(const InteractionT<T> &in, int64_t a, long L, const T *s, long ld, T *st) const
  {
    const int nsp = in.nsp, nc = n_comp_, block = nc * nsp;
    for (long k = 0; k < L; k++) {
      const int64_t q = a + k;
      for (int cc = 0; cc < nc; cc++) {
        const T tc = tens_[cc * pp_ + q];
        for (int nu = 0; nu < nsp; nu++) st[k * block + cc * nsp + nu] = tc * s[nu * ld + k];
      }
    }
  }

  // h_i += V_0 E + vecscales |V_vec E| + quadscales |V_quad E|; then softplus
  void interaction_output(const InteractionT<T> &in, BlockCache<T> &c, int i)
  {
    const int nf = in.n_out;
    const T *comp = c.comp.data() + static_cast<size_t>(i) * n_comp_ * nf;
    T *h = c.h_int.data() + static_cast<size_t>(i) * nf;
    T *norms = c.norms.data() + static_cast<size_t>(i) * 2 * nf;
    const T cusp = in.cusp;
#pragma omp simd
    for (int o = 0; o < nf; o++) h[o] += comp[o];
    if (order_ != TensorOrder::Scalar) {
      const T *vs = in.vecscales.data();
#pragma omp simd
      for (int o = 0; o < nf; o++) {
        const T v0 = comp[nf + o], v1 = comp[2 * nf + o], v2 = comp[3 * nf + o];
        norms[o] = std::sqrt(v0 * v0 + v1 * v1 + v2 * v2 + cusp);
        h[o] += norms[o] * vs[o];
      }
    }
    if (order_ == TensorOrder::Quadrupole) {
      const T *qs = in.quadscales.data();
#pragma omp simd
      for (int o = 0; o < nf; o++) {
        const T *q = comp + 4 * nf + o;    // components xx xy xz yy yz, stride nf
        const T sq = q[0] * q[0] + q[nf] * q[nf] + q[2 * nf] * q[2 * nf] + q[3 * nf] * q[3 * nf] +
                     q[4 * nf] * q[4 * nf];
        norms[nf + o] = std::sqrt(T(2) * (sq + q[0] * q[3 * nf]) + cusp);
        h[o] += norms[nf + o] * qs[o];
      }
    }
    const size_t row = static_cast<size_t>(i) * nf;
    softplus_rows(h, act_.data() + row, h, nf);
  }

  void energies(const int64_t *species, double *node_energy)
  {
#pragma omp for schedule(static)
    for (int i = 0; i < n_nodes_; i++) {
      T e = T(0);
      for (size_t l = 0; l < head_.size(); l++) {
        const LinearT<T> &h = head_[l];
        const T *zi = features(l) + static_cast<size_t>(i) * h.n_in;
        T part = h.b.empty() ? T(0) : h.b[0];
        for (int f = 0; f < h.n_in; f++) part += h.w[f] * zi[f];
        e = (l == 0) ? part : e + part;
      }
      if (prior_.present) {
        T p = T(0);
        for (int64_t q = seg_[static_cast<size_t>(i) * n_types_];
             q < seg_[static_cast<size_t>(i + 1) * n_types_]; q++)
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
    prior_backward(species, n_seed);
    const int nb = static_cast<int>(blocks_.size());
    // gradient of E with respect to the block outputs, seeded by the energy head
    int cur = 0;
    head_seed(nb, n_seed, gbuf_[cur].data());
    for (int b = nb - 1; b >= 0; b--) {
      backward_block(b, n_seed, gbuf_[cur].data(), gbuf_[1 - cur].data());
      cur = 1 - cur;
    }
    pair_vector_gradient(grad);
  }

  void head_seed(int level, int n_seed, T *gz)
  {
    const LinearT<T> &h = head_[level];
#pragma omp for schedule(static)
    for (int i = 0; i < n_nodes_; i++)
      for (int f = 0; f < h.n_in; f++)
        gz[static_cast<size_t>(i) * h.n_in + f] = i < n_seed ? h.w[f] : T(0);
  }

  void prior_backward(const int64_t *species, int n_seed)
  {
    if (!prior_.present) return;
#pragma omp for schedule(static)
    for (int i = 0; i < n_seed; i++)
      for (int64_t q = seg_[static_cast<size_t>(i) * n_types_];
           q < seg_[static_cast<size_t>(i + 1) * n_types_]; q++) {
        const size_t k = static_cast<size_t>(species[i] * prior_.n_types + species[second_[q]]);
        g_r_[q] += -T(0.5) * prior_a_[k] * prior_energy(species[i], species[second_[q]], r_[q]);
      }
  }

  // gy: gradient w.r.t. block b's output; gz: filled with the gradient w.r.t. its input
  // (features z_b) when b > 0.  gy is overwritten (working buffer).
  void backward_block(int b, int n_seed, T *gy, T *gz)
  {
    const BlockT<T> &blk = blocks_[b];
    const InteractionT<T> &in = blk.interaction;
    const BlockCache<T> &c = cache_[b];
    const int nf = in.n_out, nfi = in.n_in, n_atom = blk.n_atom_layers();
    const long nn = n_nodes_;
    const bool need_input_grad = b > 0;    // block 0's input is the constant one-hot
    T *g = gy, *ga = ga_.data(), *gh = gh_.data();
    for (int k = n_atom - 1; k >= 0; k--) {
      // y_k = y_{k-1} + R softplus(L y_{k-1} + l_b) + r_b
      blk.atom_res[k].backward(nn, g, ga, false);
      scale_rows(ga, c.h_atom[k].data(), nn * nf);
      blk.atom_base[k].backward(nn, ga, g, true);
    }
    blk.res.backward(nn, g, gh, false);
    scale_rows(gh, c.h_int.data(), nn * nf);
    if (need_input_grad) {
      if (blk.adjust.empty()) in.selfint.backward(nn, gh, gz, false, g);
      else {
        blk.adjust.backward(nn, g, gz, false);
        in.selfint.backward(nn, gh, gz, true);
      }
    }
#pragma omp for schedule(static)
    for (int i = 0; i < n_nodes_; i++) component_gradient(in, c, i, gh, gcomp_.data());
    // dE/dE_i[c][f * nsp + nu] = sum_o dE/d(V_c E)[o] V[nu, o, f]: one GEMM (pads get 0)
    gemm(true, nn * n_comp_, in.kdim, nf, gcomp_.data(), nf, in.wint_t.data(), in.kdim,
         genv_.data(), in.kdim);
    Scratch<T> &sc = scratch_[omp_get_thread_num()];
    if (need_input_grad) std::fill(sc.gz_msg.begin(), sc.gz_msg.begin() + nn * nfi, T(0));
#pragma omp for schedule(dynamic, 8)
    for (int i = 0; i < n_nodes_; i++) {
      if (b == 0) pair_backward_onehot(b, in, i, sc);
      else pair_backward_dense(b, in, i, features(b), sc);
    }
    if (!need_input_grad) return;
    // messages to neighbour features raced between nodes: one accumulator per thread
    const int nth = omp_get_num_threads();
    const LinearT<T> &h = head_[b];
#pragma omp for schedule(static)
    for (int i = 0; i < n_nodes_; i++) {
      T *gzi = gz + static_cast<size_t>(i) * nfi;
      for (int t = 0; t < nth; t++) {
        const T *src = scratch_[t].gz_msg.data() + static_cast<size_t>(i) * nfi;
        for (int f = 0; f < nfi; f++) gzi[f] += src[f];
      }
      // the features entering block b are also a level of the energy head
      if (i < n_seed)
        for (int f = 0; f < nfi; f++) gzi[f] += h.w[f];
    }
  }

  void scale_rows(T *x, const T *s, long n)
  {
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const long chunk = round_up((n + nth - 1) / nth, lanes<T>());
    const long a = std::min(n, tid * chunk), e = std::min(n, a + chunk);
#pragma omp simd
    for (long k = a; k < e; k++) x[k] *= s[k];
#pragma omp barrier
  }

  // dE/d(V_c E) from dE/dh through the scalar part and the two norms
  void component_gradient(const InteractionT<T> &in, const BlockCache<T> &c, int i, const T *gh_all,
                          T *gcomp_all) const
  {
    const int nf = in.n_out;
    const T *comp = c.comp.data() + static_cast<size_t>(i) * n_comp_ * nf;
    const T *norms = c.norms.data() + static_cast<size_t>(i) * 2 * nf;
    const T *gh = gh_all + static_cast<size_t>(i) * nf;
    T *gcomp = gcomp_all + static_cast<size_t>(i) * n_comp_ * nf;
    for (int o = 0; o < nf; o++) gcomp[o] = gh[o];
    if (order_ != TensorOrder::Scalar) {
      const T *vs = in.vecscales.data();
#pragma omp simd
      for (int o = 0; o < nf; o++) {
        const T scale = gh[o] * vs[o] / norms[o];
        for (int a = 1; a <= 3; a++) gcomp[a * nf + o] = scale * comp[a * nf + o];
      }
    }
    if (order_ == TensorOrder::Quadrupole) {
      const T *qs = in.quadscales.data();
#pragma omp simd
      for (int o = 0; o < nf; o++) {
        // |Q| = sqrt(2 (sum_k Q_k^2 + Q_xx Q_yy) + cusp)
        const T scale = gh[o] * qs[o] / norms[nf + o];
        const T *q = comp + 4 * nf + o;
        T *gq = gcomp + 4 * nf + o;
        for (int k = 0; k < 5; k++) gq[k * nf] = scale * T(2) * q[k * nf];
        gq[0] += scale * q[3 * nf];
        gq[3 * nf] += scale * q[0];
      }
    }
  }

  // one-hot input, per segment of pairs with a type-t neighbour: vectorised over pairs
  void pair_backward_onehot(size_t b, const InteractionT<T> &in, int i, Scratch<T> &sc)
  {
    const int nc = n_comp_, nt = n_types_, kd = in.kdim, ns = in.n_sens, nsp = in.nsp;
    const T *genv = genv_.data() + static_cast<size_t>(i) * nc * kd;
    for (int t = 0; t < nt; t++) {
      const int64_t a = seg_[i * nt + t], e = seg_[i * nt + t + 1];
      const long L = static_cast<long>(e - a);
      if (L == 0) continue;
      const long Lp = round_up(L, math_chunk<T>());    // reads into the next segment or the padding
      T *gr = sc.gr.data(), *gt = sc.gt.data();
      const T *s = nullptr, *ds = nullptr;
      long ls = 0;
      node_sensitivities(b, a, L, sc, s, ds, ls);
      const T *G = genv + t * nsp;    // G[c][nu] at G[c * kd + nu]
      const T *tens = tens_.data() + a;
      if (nc == 9) pair_grad_kernel<T, 9>(Lp, ns, s, ds, ls, tens, pp_, G, kd, gr, gt, Lp);
      else if (nc == 4) pair_grad_kernel<T, 4>(Lp, ns, s, ds, ls, tens, pp_, G, kd, gr, gt, Lp);
      else if (nc == 1) pair_grad_kernel<T, 1>(Lp, ns, s, ds, ls, tens, pp_, G, kd, gr, gt, Lp);
      else pair_grad_generic(nc, Lp, ns, s, ds, ls, tens, pp_, G, kd, gr, gt, Lp);
      tensor_backward_soa(L, a, gr, gt, Lp);
    }
  }

  // dE/dr += gr, dE/du += (through T = (1, u, xx - tr, xy, xz, yy - tr, yz), tr = |u|^2 / 3)
  // for L pairs from sorted pair a; gt rows ld apart
  void tensor_backward_soa(long L, int64_t a, const T *gr, const T *gt, long ld)
  {
    const int64_t pp = pp_;
    T *g_r = g_r_.data() + a, *gu0 = g_u_.data() + a, *gu1 = gu0 + pp, *gu2 = gu1 + pp;
    const T *u0 = u_.data() + a, *u1 = u0 + pp, *u2 = u1 + pp;
#pragma omp simd
    for (long k = 0; k < L; k++) g_r[k] += gr[k];
    if (order_ == TensorOrder::Scalar) return;
    const T *t1 = gt + ld, *t2 = gt + 2 * ld, *t3 = gt + 3 * ld;
    if (order_ != TensorOrder::Quadrupole) {
#pragma omp simd
      for (long k = 0; k < L; k++) {
        gu0[k] += t1[k];
        gu1[k] += t2[k];
        gu2[k] += t3[k];
      }
      return;
    }
    const T *t4 = gt + 4 * ld, *t5 = gt + 5 * ld, *t6 = gt + 6 * ld, *t7 = gt + 7 * ld,
            *t8 = gt + 8 * ld;
#pragma omp simd
    for (long k = 0; k < L; k++) {
      const T gtr = -(t4[k] + t7[k]) * T(2) / T(3);
      gu0[k] += t1[k] + T(2) * t4[k] * u0[k] + t5[k] * u1[k] + t6[k] * u2[k] + gtr * u0[k];
      gu1[k] += t2[k] + t5[k] * u0[k] + T(2) * t7[k] * u1[k] + t8[k] * u2[k] + gtr * u1[k];
      gu2[k] += t3[k] + t6[k] * u0[k] + t8[k] * u1[k] + gtr * u2[k];
    }
  }

  // dense input features: through E_i = sum_k z_j (T_c s_nu)(k) to the pairs and to z_j
  void pair_backward_dense(size_t b, const InteractionT<T> &in, int i, const T *z, Scratch<T> &sc)
  {
    const int nsp = in.nsp, nc = n_comp_, nfi = in.n_in, kd = in.kdim, block = nc * nsp;
    const int64_t a = seg_[static_cast<size_t>(i) * n_types_], e = seg_[static_cast<size_t>(i + 1) * n_types_];
    const long L = static_cast<long>(e - a);
    if (L == 0) return;
    const T *genv = genv_.data() + static_cast<size_t>(i) * nc * kd;
    const T *s = nullptr, *ds = nullptr;
    long ld = 0;
    node_sensitivities(b, a, L, sc, s, ds, ld);
    T *st = sc.st.data(), *zt = sc.zt.data();
    T *g2 = sc.g2.data(), *g2t = sc.g2t.data(), *gst = sc.gst.data(), *gzm = sc.gzm.data();
    // g2[f][c * nsp + nu] and g2t[c * nsp + nu][f] from genv[c][f * nsp + nu]
    for (int cc = 0; cc < nc; cc++)
      for (int f = 0; f < nfi; f++)
        for (int nu = 0; nu < nsp; nu++) {
          const T v = genv[cc * kd + f * nsp + nu];
          g2[f * block + cc * nsp + nu] = v;
          g2t[(cc * nsp + nu) * nfi + f] = v;
        }
    // st[k][c * nsp + nu] = T_c s_nu, zt[k][f] = z_j[f] (pair-major here)
    pair_products(in, a, L, s, ld, st);
    for (long k = 0; k < L; k++)
      std::copy(z + second_[a + k] * nfi, z + second_[a + k] * nfi + nfi, zt + k * nfi);
    // gst = dE/d(T_c s_nu) per pair; gzm = the messages to the neighbours' features
    gemm(false, L, block, nfi, zt, nfi, g2, block, gst, block);
    gemm(false, L, nfi, block, st, block, g2t, nfi, gzm, nfi);
    for (long k = 0; k < L; k++) {
      T *gj = sc.gz_msg.data() + second_[a + k] * nfi;
      for (int f = 0; f < nfi; f++) gj[f] += gzm[k * nfi + f];
    }
    // dE/ds_nu = sum_c gst T_c, dE/dT_c = sum_nu gst s_nu, dE/dr = sum_nu dE/ds_nu ds_nu/dr
    T *gr = sc.gr.data(), *gt = sc.gt.data();
    const long lgt = L;    // gt rows
    for (long k = 0; k < L; k++) {
      const int64_t q = a + k;
      const T *g = gst + k * block;
      T acc_r = T(0);
      for (int nu = 0; nu < in.n_sens; nu++) {
        T gs = T(0);
        for (int cc = 0; cc < nc; cc++) gs += g[cc * nsp + nu] * tens_[cc * pp_ + q];
        acc_r += gs * ds[nu * ld + k];
      }
      gr[k] = acc_r;
      for (int cc = 0; cc < nc; cc++) {
        T acc = T(0);
        for (int nu = 0; nu < in.n_sens; nu++) acc += g[cc * nsp + nu] * s[nu * ld + k];
        gt[cc * lgt + k] = acc;
      }
    }
    tensor_backward_soa(L, a, gr, gt, lgt);
  }

  // (dE/dr, dE/du) -> dE/d(x_second - x_first) in the caller's pair order
  void pair_vector_gradient(double *grad) const
  {
    const int64_t n = n_pairs_, pp = pp_;
#pragma omp for schedule(static)
    for (int64_t q = 0; q < n; q++) {
      const T u[3] = {u_[q], u_[pp + q], u_[2 * pp + q]};
      const T gu[3] = {g_u_[q], g_u_[pp + q], g_u_[2 * pp + q]};
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
