"""Learned large-timestep CG dynamics of sequence-defined polymers (after Fu et al., TMLR 2023).

Data: :mod:`.chains` (bead-spring copolymer systems and their reference LAMMPS runs),
:mod:`.partition` (METIS monomer -> bead partitions), :mod:`.beads` (CG bead trajectories,
files and dumps).  Models, training and rollouts live in the other modules of the package.
"""
