/* Element-wise libm kernels of the native evaluator (see hipnn_math.h; -ffast-math here). */

#include "hipnn_math.h"

#include <algorithm>
#include <cmath>

namespace hipcg_native {

namespace {
constexpr double PI = 3.14159265358979323846;
// exp arguments below this are raised to it: libmvec's vector exp leaves its fast path for
// lanes that underflow (a scalar call per lane), and exp(-80) ~ 2e-35 (float) or exp(-700)
// ~ 1e-304 (double) is zero for every sum it enters.  Sensitivities far from their centre and
// strongly negative softplus inputs are the cases.
// The floor is read through a volatile: a compile-time constant would let GCC rewrite
// exp(max(x, c)) as (x < c ? exp(c) : exp(x)) and call exp on the unclamped argument.
volatile float exp_floor_f = -80.0f;
volatile double exp_floor_d = -700.0;
template <typename T> inline T exp_floor() { return sizeof(T) == 4 ? T(exp_floor_f) : T(exp_floor_d); }
}

template <typename T> void softplus_rows(const T *x, T *y, T *grad, int n)
{
  const T lo = exp_floor<T>();
#pragma omp simd
  for (int i = 0; i < n; i++) {
    const T xi = x[i];
    const bool linear = xi > T(20);
    const T z = std::exp(linear ? T(20) : std::max(xi, lo));    // never over/underflows
    grad[i] = linear ? T(1) : z / (z + T(1));
    y[i] = linear ? xi : std::log1p(z);
  }
}

template <typename T>
void sensitivity_columns(const T *r, const T *cut, const T *dcut, long n, const T *inv_mu,
                         const T *sigma2, int n_sens, long ld, T *s, T *ds)
{
  constexpr int CH = math_chunk<T>();
  const T lo = exp_floor<T>();
  for (long q0 = 0; q0 < n; q0 += CH) {
    T inv_r[CH], cq[CH], dq[CH];
#pragma omp simd
    for (int l = 0; l < CH; l++) {
      inv_r[l] = T(1) / r[q0 + l];
      cq[l] = cut[q0 + l];
      dq[l] = dcut[q0 + l];
    }
    for (int nu = 0; nu < n_sens; nu++) {
      const T im = inv_mu[nu], s2 = sigma2[nu];
      T *snu = s + nu * ld + q0, *dsnu = ds + nu * ld + q0;
#pragma omp simd
      for (int l = 0; l < CH; l++) {
        const T d = inv_r[l] - im;
        const T base = std::exp(std::max(T(-0.5) * d * d * s2, lo));
        snu[l] = base * cq[l];
        dsnu[l] = base * s2 * d * inv_r[l] * inv_r[l] * cq[l] + base * dq[l];
      }
    }
  }
}

template <typename T> void cos2_cutoff(const T *r, long n, T cutoff, T *cut, T *dcut)
{
#pragma omp simd
  for (long q = 0; q < n; q++) {
    const bool inside = r[q] <= cutoff;
    const T theta = T(PI / 2) * (inside ? r[q] : cutoff) / cutoff;
    // sin(theta) as cos(pi/2 - theta): two vector cos calls (GCC would fuse sin and cos of one
    // argument into a scalar sincos call)
    const T cs = std::cos(theta), sn = std::cos(T(PI / 2) - theta);
    cut[q] = inside ? cs * cs : T(0);
    dcut[q] = inside ? -T(PI) / cutoff * sn * cs : T(0);    // d cos^2(theta) / dr
  }
}

template void softplus_rows<float>(const float *, float *, float *, int);
template void softplus_rows<double>(const double *, double *, double *, int);
template void sensitivity_columns<float>(const float *, const float *, const float *, long,
                                         const float *, const float *, int, long, float *, float *);
template void sensitivity_columns<double>(const double *, const double *, const double *, long,
                                          const double *, const double *, int, long, double *,
                                          double *);
template void cos2_cutoff<float>(const float *, long, float, float *, float *);
template void cos2_cutoff<double>(const double *, long, double, double *, double *);

}    // namespace hipcg_native
