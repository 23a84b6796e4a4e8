"""hipcg: machine-learned coarse-grained force fields by force matching, run in LAMMPS.

Data flows one way: trajectory -> mapping -> CG dataset -> model -> export -> LAMMPS ->
analysis -> report.  Every stage is a plain function; ``hipcg.cli`` is a thin layer on top.
"""

__version__ = "0.1.0"

#: Unit system used end to end (LAMMPS ``units real``): Å, kcal/mol, fs, g/mol, K, atm.
UNITS = "real"
