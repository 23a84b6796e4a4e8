/* Entry point that LAMMPS calls on `plugin load hipcgplugin.so`. */
#include "lammpsplugin_abi.h"

#include "error.h"
#include "lammps.h"
#include "pair_hipcg.h"
#include "pair_hipcg_volume.h"

#include <cstring>

using namespace LAMMPS_NS;

#ifndef HIPCG_LAMMPS_VERSION
#error "HIPCG_LAMMPS_VERSION must be defined by the build (the LAMMPS version string, e.g. 22 Jul 2025)"
#endif

static Pair *hipcg_creator(LAMMPS *lmp)
{
  return new PairHipcg(lmp);
}

static Pair *hipcg_volume_creator(LAMMPS *lmp)
{
  return new PairHipcgVolume(lmp);
}

extern "C" void lammpsplugin_init(void *lmp_ptr, void *handle, void *regfunc)
{
  auto *lmp = static_cast<LAMMPS *>(lmp_ptr);
  // The struct layout and every class we touch (Pair, NeighList, Atom) are those
  // of the headers we were compiled against: a different LAMMPS would crash later,
  // so refuse cleanly now.
  if (std::strcmp(lmp->version, HIPCG_LAMMPS_VERSION) != 0)
    lmp->error->all(FLERR,
                    "hipcgplugin.so was built for LAMMPS {} but is being loaded into LAMMPS {}: "
                    "rebuild it with `hipcg build-plugin`",
                    HIPCG_LAMMPS_VERSION, lmp->version);

  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = HIPCG_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "hipcg";
  plugin.info = "hipcg machine-learned coarse-grained pair style (TorchScript models)";
  plugin.author = "hipcg developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &hipcg_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);

  // the volume term alone, for classical models (pair_style hybrid/overlay table ... hipcg/volume)
  plugin.name = "hipcg/volume";
  plugin.info = "hipcg volume term U_V(V) (energy and virial, no forces)";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &hipcg_volume_creator;
  (*register_plugin)(&plugin, lmp);
}
