/* -*- c++ -*- -----------------------------------------------------------
   The volume term of a CG model (hipcg/volume.py is the reference):

     U_V(V) = N u(v),  v = V / N               (volume per bead)
     P_V(v) = p0 - K (v - v0) / v0             (pressure units: atm in units real)
     u(v)   = -[p0 (v - v0) - K (v - v0)^2 / (2 v0)] / nktv2p

   It depends on the volume alone, so it exerts no forces; f.r cannot see it,
   and its virial is added explicitly: v P_V / nktv2p on each diagonal
   component per bead, which makes LAMMPS's pressure exactly P + P_V.
   Used by pair_style hipcg (record "volume_term" in the model's metadata) and
   pair_style hipcg/volume (pair_coeff * * p0 bulk v0).
------------------------------------------------------------------------- */
#ifndef HIPCG_VOLUME_H
#define HIPCG_VOLUME_H

#include "atom.h"
#include "domain.h"
#include "force.h"
#include "lammps.h"
#include "pair.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "fmt/format.h"

namespace hipcg_volume {

static constexpr const char *FORM = "linear-pressure";

struct VolumeTerm {
  double p0 = 0.0;      // pressure at v0
  double bulk = 0.0;    // K, the bulk modulus the term adds at v0
  double v0 = 1.0;      // reference volume per bead

  // Checked values; `prefix` names them in the message (e.g. "volume_term.").
  static VolumeTerm make(double p0, double bulk, double v0, const std::string &prefix = "")
  {
    const double values[3] = {p0, bulk, v0};
    const char *names[3] = {"p0", "bulk", "v0"};
    for (int k = 0; k < 3; k++)
      if (!std::isfinite(values[k]))
        throw std::invalid_argument(
            fmt::format("{}{} must be finite, got {}", prefix, names[k], values[k]));
    if (!(v0 > 0.0))
      throw std::invalid_argument(
          fmt::format("{}v0 must be > 0 (volume per bead), got {}", prefix, v0));
    return VolumeTerm{p0, bulk, v0};
  }

  // The metadata record {"form": "linear-pressure", "p0", "bulk", "v0", "units"}, as
  // hipcg.volume.VolumeTerm.to_dict writes it.  A template so that this header need not
  // include LAMMPS's json.h (which must not be included from headers); Json is LAMMPS_NS::json.
  template <class Json> static VolumeTerm from_json(const Json &record)
  {
    if (!record.is_object())
      throw std::invalid_argument("volume_term must be a record (JSON object) or null, got " +
                                  record.dump());
    auto number = [&](const char *key) {
      auto it = record.find(key);
      if (it == record.end())
        throw std::invalid_argument(fmt::format("volume_term.{} is missing", key));
      if (!it->is_number())
        throw std::invalid_argument(
            fmt::format("volume_term.{} must be a number, got {}", key, it->dump()));
      return it->template get<double>();
    };
    auto form = record.find("form");
    if (form == record.end() || !form->is_string() || form->template get<std::string>() != FORM)
      throw std::invalid_argument(fmt::format("volume_term.form must be '{}', got {}", FORM,
                                              form == record.end() ? "nothing" : form->dump()));
    // the values are in LAMMPS units real (the plugin refuses any other units for the model):
    // a record that says otherwise would be silently wrong by a conversion factor
    auto units = record.find("units");
    if (units != record.end() && !units->is_null()) {
      const char *expected[3][2] = {{"p0", "atm"}, {"bulk", "atm"}, {"v0", "Angstrom^3 per bead"}};
      for (auto &kv : expected) {
        auto u = units->is_object() ? units->find(kv[0]) : units->end();
        if (!units->is_object() || u == units->end() || !u->is_string() ||
            u->template get<std::string>() != kv[1])
          throw std::invalid_argument(fmt::format("volume_term.units must be {{\"p0\": \"atm\", "
                                                  "\"bulk\": \"atm\", \"v0\": \"Angstrom^3 per "
                                                  "bead\"}}, got {}", units->dump()));
      }
    }
    return make(number("p0"), number("bulk"), number("v0"), "volume_term.");
  }

  double pressure(double v) const { return p0 - bulk * (v - v0) / v0; }

  double energy_per_bead(double v, double nktv2p) const
  {
    const double dv = v - v0;
    return -(p0 * dv - bulk * dv * dv / (2.0 * v0)) / nktv2p;
  }

  // Adds the term to `pair`'s accumulators for this rank's local beads (ev_init already
  // called).  global_virial: whether the pair style is accumulating a global virial this call
  // (vflag_global, or vflag_fdotr: call this after virial_fdotr_compute).  Summed over ranks the
  // virial is V P_V / nktv2p per diagonal component, whatever the decomposition.
  void add_to(LAMMPS_NS::LAMMPS *lmp, LAMMPS_NS::Pair &pair, bool global_virial) const
  {
    const double natoms = static_cast<double>(lmp->atom->natoms);
    if (natoms <= 0.0) return;
    const auto *domain = lmp->domain;
    const double v = domain->xprd * domain->yprd * domain->zprd / natoms;
    const double nktv2p = lmp->force->nktv2p;
    const double u = energy_per_bead(v, nktv2p);
    const double w = v * pressure(v) / nktv2p;    // per-bead diagonal virial
    const int nlocal = lmp->atom->nlocal;
    if (pair.eflag_global) pair.eng_vdwl += nlocal * u;
    if (global_virial)
      for (int k = 0; k < 3; k++) pair.virial[k] += nlocal * w;
    if (pair.eflag_atom)
      for (int i = 0; i < nlocal; i++) pair.eatom[i] += u;
    if (pair.vflag_atom)
      for (int i = 0; i < nlocal; i++)
        for (int k = 0; k < 3; k++) pair.vatom[i][k] += w;
  }
};

// Why the volume is undefined for this box, or "" (fine): 3d and periodic in x, y and z.
inline std::string box_problem(const LAMMPS_NS::Domain *domain)
{
  if (domain->dimension != 3) return "the box is 2d";
  std::string open;
  if (!domain->xperiodic) open += " x";
  if (!domain->yperiodic) open += " y";
  if (!domain->zperiodic) open += " z";
  return open.empty() ? "" : "the box is not periodic in" + open;
}

}    // namespace hipcg_volume

#endif
