/* ----------------------------------------------------------------------
   pair_style hipcg/volume

   The volume term U_V(V) = N u(V/N) of hipcg_volume.h with the parameters of
   pair_coeff * * p0 bulk v0 (the run's pressure and volume-per-bead units:
   atm and A^3 in units real).  Energy and virial only, no forces, so no
   neighbour list.  It cannot contribute to f.r: no_virial_fdotr_compute = 1,
   which makes pair_style hybrid sum every sub-style's own global virial
   instead of taking f.r over the summed forces.
------------------------------------------------------------------------- */

#include "pair_hipcg_volume.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "utils.h"

#include <stdexcept>

using namespace LAMMPS_NS;

static const double STANDALONE_CUTOFF = 1.0;

PairHipcgVolume::PairHipcgVolume(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  no_virial_fdotr_compute = 1;
}

PairHipcgVolume::~PairHipcgVolume()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairHipcgVolume::allocate()
{
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

void PairHipcgVolume::settings(int narg, char **)
{
  if (narg != 0)
    error->all(FLERR, "pair_style hipcg/volume takes no arguments (its parameters go in "
               "pair_coeff * * p0 bulk v0)");
}

/* pair_coeff * * p0 bulk v0 */

void PairHipcgVolume::coeff(int narg, char **arg)
{
  if (narg != 5)
    error->all(FLERR, "pair_coeff for hipcg/volume needs '* * p0 bulk v0' (pressure, bulk "
               "modulus, volume per bead), got {} argument(s)", narg);
  // '* *' only (one_coeff): LAMMPS (or pair_style hybrid) has checked that already
  if (!allocated) allocate();
  const double p0 = utils::numeric(FLERR, arg[2], false, lmp);
  const double bulk = utils::numeric(FLERR, arg[3], false, lmp);
  const double v0 = utils::numeric(FLERR, arg[4], false, lmp);
  try {
    term_ = hipcg_volume::VolumeTerm::make(p0, bulk, v0);
  } catch (const std::invalid_argument &e) {
    error->all(FLERR, "pair_coeff hipcg/volume: {}", e.what());
  }
  coeff_set_ = true;
  const int n = atom->ntypes;
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 1;
  if (comm->me == 0)
    utils::logmesg(lmp, "pair hipcg/volume: P_V = p0 - K (v - v0)/v0 with p0 = {}, K = {}, "
                   "v0 = {} per bead\n", p0, bulk, v0);
}

void PairHipcgVolume::init_style()
{
  if (!coeff_set_) error->all(FLERR, "pair_style hipcg/volume: pair_coeff * * p0 bulk v0 is missing");
  const std::string problem = hipcg_volume::box_problem(domain);
  if (!problem.empty())
    error->all(FLERR, "pair_style hipcg/volume needs a 3d box periodic in x, y and z (the "
               "volume is undefined otherwise); {}", problem);
  // no neighbour list: the term depends on the volume and the number of beads only
}

/* No interaction range: 0 under pair_style hybrid (the other sub-styles set the cutoff).  On its
   own (e.g. bonded-only models) a cutoff of 0 would leave LAMMPS without a ghost shell ("No
   ghost atoms will be generated") and without atom sorting, so it gets a nominal one (1 distance
   unit); it requests no neighbour list, so that costs no more than the ghost shell. */

double PairHipcgVolume::init_one(int, int)
{
  return force->pair == this ? STANDALONE_CUTOFF : 0.0;
}

void PairHipcgVolume::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  term_.add_to(lmp, *this, vflag_global != 0);
}
