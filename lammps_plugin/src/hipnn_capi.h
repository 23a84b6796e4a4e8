/* -----------------------------------------------------------------------
   A C interface to the native evaluator (hipnn_native.h) for Python (ctypes):
   libhipcgnative.so, built beside the plugin from the same sources, so the ASE
   calculator and `hipcg evaluate` run exactly what `pair_style hipcg backend
   native` runs.  No LAMMPS symbols; libtorch only to read the model file.

   Every call returns a status (HIPCG_NATIVE_OK, ..._UNSUPPORTED: the model has a
   part the native evaluator does not know, ..._ERROR: anything else) and writes a
   message into err (err_len bytes, always NUL-terminated) when it is not OK.
------------------------------------------------------------------------- */
#ifndef HIPCG_HIPNN_CAPI_H
#define HIPCG_HIPNN_CAPI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { HIPCG_NATIVE_OK = 0, HIPCG_NATIVE_UNSUPPORTED = 1, HIPCG_NATIVE_ERROR = 2 };

typedef struct hipcg_native_model hipcg_native_model;

// bumped whenever a signature below changes; Python refuses a library of another version
int hipcg_native_abi_version(void);

// Reads the TorchScript model file at path; model_kind, n_types and cutoff are its metadata's
// "model", number of type names and "cutoff"; temperature (K) for a temperature-aware model,
// <= 0 otherwise.  *out is the handle (NULL unless OK).
int hipcg_native_open(const char *path, const char *model_kind, int n_types, double cutoff,
                      int single_precision, double temperature, hipcg_native_model **out,
                      char *err, int err_len);

// A temperature-aware model's T (K): the heads are folded again, w_E - (T / T_ref) w_S.
int hipcg_native_set_temperature(hipcg_native_model *model, double temperature, char *err,
                                 int err_len);

// node_energy: n_nodes values; grad: 3 * n_pairs values, d(sum_{i < n_seed} e_i) / d vec.
int hipcg_native_evaluate(hipcg_native_model *model, int n_nodes, const int64_t *species,
                          int64_t n_pairs, const int64_t *first, const int64_t *second,
                          const double *vec, int n_seed, int n_threads, double *node_energy,
                          double *grad, char *err, int err_len);

void hipcg_native_close(hipcg_native_model *model);

#ifdef __cplusplus
}
#endif

#endif
