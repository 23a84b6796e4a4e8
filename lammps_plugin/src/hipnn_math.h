/* -*- c++ -*- -----------------------------------------------------------
   Element-wise kernels of the native evaluator that spend their time in libm
   (exp, log1p, sin/cos).  hipnn_math.cpp alone is compiled with -ffast-math so
   that GCC maps these loops onto glibc's vector math library (libmvec, <= 4 ulp);
   everything that sums or reorders stays in hipnn_native.cpp under strict IEEE
   rules.  The kernels are written to stay finite under -ffast-math (no inf or
   NaN is ever formed).
------------------------------------------------------------------------- */
#ifndef HIPCG_HIPNN_MATH_H
#define HIPCG_HIPNN_MATH_H

namespace hipcg_native {

// the sensitivity kernel works in chunks of this many pairs (64 bytes): callers pad the pair
// count to it, so that every exp is a whole vector call and none falls to a scalar remainder
template <typename T> constexpr int math_chunk() { return 64 / static_cast<int>(sizeof(T)); }

// torch.nn.Softplus() (beta 1, threshold 20): y = x > 20 ? x : log1p(exp(x)), grad = dy/dx
template <typename T> void softplus_rows(const T *x, T *y, T *grad, int n);

// hippynn's inverse sensitivities times the cos^2 cutoff of n pairs, and their r-derivatives:
// s_nu = exp(-(1/r - inv_mu_nu)^2 sigma2_nu / 2) cut, for nu < n_sens.
// Sensitivity-major: s[nu * ld + q] for nu < n_sens, q < n (n a multiple of math_chunk; the
// caller's r, cut, dcut hold n readable values)
template <typename T>
void sensitivity_columns(const T *r, const T *cut, const T *dcut, long n, const T *inv_mu,
                         const T *sigma2, int n_sens, long ld, T *s, T *ds);

// cos^2(pi r / (2 r_c)) and its r-derivative for n distances (zero at and beyond r_c)
template <typename T> void cos2_cutoff(const T *r, long n, T cutoff, T *cut, T *dcut);

}    // namespace hipcg_native

#endif
