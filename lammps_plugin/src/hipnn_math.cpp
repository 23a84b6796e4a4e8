/* Element-wise libm kernels of the native evaluator (see hipnn_math.h; -ffast-math here). */

#include "hipnn_math.h"

#include <cmath>

namespace hipcg_native {

namespace {
constexpr double PI = 3.14159265358979323846;
}

template <typename T> void softplus_rows(const T *x, T *y, T *grad, int n)
{
#pragma omp simd
  for (int i = 0; i < n; i++) {
    const T xi = x[i];
    const bool linear = xi > T(20);
    const T z = std::exp(linear ? T(20) : xi);    // clamped: exp never overflows
    grad[i] = linear ? T(1) : z / (z + T(1));
    y[i] = linear ? xi : std::log1p(z);
  }
}

template <typename T>
void sensitivity_row(T r, T cut, T dcut, const T *inv_mu, const T *sigma2, int n_sens, int nsp, T *s,
                     T *ds)
{
  const T inv_r = T(1) / r;
#pragma omp simd
  for (int nu = 0; nu < n_sens; nu++) {
    const T d = inv_r - inv_mu[nu];
    const T base = std::exp(T(-0.5) * d * d * sigma2[nu]);
    s[nu] = base * cut;
    ds[nu] = base * sigma2[nu] * d * inv_r * inv_r * cut + base * dcut;
  }
  for (int nu = n_sens; nu < nsp; nu++) s[nu] = ds[nu] = T(0);
}

template <typename T> void cos2_cutoff(const T *r, long n, T cutoff, T *cut, T *dcut)
{
#pragma omp simd
  for (long q = 0; q < n; q++) {
    const bool inside = r[q] <= cutoff;
    const T theta = T(PI / 2) * (inside ? r[q] : cutoff) / cutoff;
    const T cs = std::cos(theta), sn = std::sin(theta);
    cut[q] = inside ? cs * cs : T(0);
    dcut[q] = inside ? -T(PI) / cutoff * sn * cs : T(0);    // d cos^2(theta) / dr
  }
}

template void softplus_rows<float>(const float *, float *, float *, int);
template void softplus_rows<double>(const double *, double *, double *, int);
template void sensitivity_row<float>(float, float, float, const float *, const float *, int, int,
                                     float *, float *);
template void sensitivity_row<double>(double, double, double, const double *, const double *, int,
                                      int, double *, double *);
template void cos2_cutoff<float>(const float *, long, float, float *, float *);
template void cos2_cutoff<double>(const double *, long, double, double *, double *);

}    // namespace hipcg_native
