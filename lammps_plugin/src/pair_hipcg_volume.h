/* -*- c++ -*- -----------------------------------------------------------
   pair_style hipcg/volume: a CG model's volume term (hipcg_volume.h) on its
   own, for classical models (pair tables) through pair_style hybrid/overlay:

     pair_style hybrid/overlay table linear 1000 hipcg/volume
     pair_coeff * * hipcg/volume p0 bulk v0
------------------------------------------------------------------------- */
#ifndef LMP_PAIR_HIPCG_VOLUME_H
#define LMP_PAIR_HIPCG_VOLUME_H

#include "pair.h"

#include "hipcg_volume.h"

namespace LAMMPS_NS {

class PairHipcgVolume : public Pair {
 public:
  PairHipcgVolume(class LAMMPS *);
  ~PairHipcgVolume() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  void allocate();
  hipcg_volume::VolumeTerm term_;
  bool coeff_set_ = false;
};

}    // namespace LAMMPS_NS

#endif
