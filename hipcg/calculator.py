"""An ASE calculator for hipcg model files (the same evaluation as ``pair_style hipcg``).

Units: hipcg models work in LAMMPS ``real`` units (energy kcal/mol, length Å); ASE works in
eV and Å.  The calculator converts on the way out:

* energy   [eV]      = E [kcal/mol] * ase.units.kcal / ase.units.mol   (1 kcal/mol = 0.04336 eV)
* forces   [eV/Å]    = F [kcal/(mol Å)] * the same factor
* stress   [eV/Å^3]  = -virial [kcal/mol] / V [Å^3] * the same factor (Voigt xx yy zz yz xz xy;
                        ASE's sign: positive stress = tension, i.e. minus the pressure tensor)

A model with a volume term (pressure matching, ``metadata.volume_term``) adds its energy, per-bead
energy and isotropic stress on periodic cells, as the plugin does; on open boundaries, where the
volume is undefined, it is an error.

A temperature-aware model (W = E - T S, ``metadata.temperature_aware``) needs ``temperature``
(K), as ``pair_style hipcg temperature T`` does; giving one to any other model is an error.

``backend`` is the plugin's: ``auto`` (default; the native evaluator for HIP-NN models on the
CPU, as ``pair_style hipcg`` runs them), ``native`` or ``torch`` (:mod:`hipcg.backends`).

Bead species come from ``atoms.arrays['hipcg_type']`` (type names) if present, else from the
chemical symbols, matched against the model's type names.
"""

from __future__ import annotations

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes

from .backends import ModelEvaluator
from .errors import DataError
from .graph import periodic_graph, with_volume_term

KCAL_PER_MOL = units.kcal / units.mol  # eV per (kcal/mol)


class HipcgCalculator(Calculator):
    implemented_properties = ["energy", "energies", "forces", "stress", "free_energy"]

    def __init__(self, model_path, device: str = "cpu", temperature: float | None = None,
                 backend: str = "auto", threads: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.evaluator = ModelEvaluator(model_path, backend=backend, device=device,
                                        temperature=temperature, threads=threads)
        self.metadata = self.evaluator.metadata
        self._index = {name: i for i, name in enumerate(self.metadata.type_names)}

    def species_of(self, atoms) -> np.ndarray:
        names = atoms.arrays["hipcg_type"] if "hipcg_type" in atoms.arrays else atoms.get_chemical_symbols()
        try:
            return np.array([self._index[str(n)] for n in names], dtype=np.int64)
        except KeyError as err:
            raise DataError(f"bead type {err.args[0]!r} is not in the model's types "
                             f"{self.metadata.type_names}") from None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if not all(atoms.pbc):
            # open boundaries along the non-periodic directions; stress undefined
            pbc = tuple(bool(p) for p in atoms.pbc)
        else:
            pbc = (True, True, True)
        graph = periodic_graph(atoms.positions, atoms.cell.array, self.species_of(atoms),
                               self.metadata.cutoff, pbc=pbc)
        result = self.evaluator.evaluate(graph)
        if self.metadata.volume is not None:
            if not all(atoms.pbc):
                raise DataError("this model has a volume term (pressure matching): it needs a "
                                "periodic cell in x, y and z")
            result = with_volume_term(result, self.metadata.volume, atoms.cell.array)
        self.results["energy"] = result.energy * KCAL_PER_MOL
        self.results["free_energy"] = self.results["energy"]
        self.results["energies"] = result.node_energies * KCAL_PER_MOL
        self.results["forces"] = result.forces * KCAL_PER_MOL
        if all(atoms.pbc):
            w = result.virial * KCAL_PER_MOL
            stress = -0.5 * (w + w.T) / atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]
