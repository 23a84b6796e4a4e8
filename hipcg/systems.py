"""All-atom systems as data: a molecule template plus force-field parameters in one YAML file.

A system file (``datasets/<name>/system.yaml``) holds

* ``force_field``: LAMMPS style names (``pair_style``, ``bond_style``, ...), ``pair_modify``,
  ``special_bonds``, ``kspace_style``, optional ``shake: {bonds: [A-B], angles: [A-B-C]}`` and
  a ``source`` citation;
* ``atom_types``: ``{TYPE: {mass, element, pair: [coeffs...], source}}`` (per-type pair coeffs;
  cross terms come from ``pair_modify mix``);
* ``bond_types`` / ``angle_types`` / ``dihedral_types``: ``{"A-B[-C[-D]]": {coeffs: [...]}}``
  keyed by atom types, matched in either direction;
* ``molecule``: ``residue``, ``atoms`` (``name``, ``type``, ``charge``, ``xyz``) and ``bonds``
  as pairs of atom names.  Angles and dihedrals are derived from the bond graph, so only the
  parameters for each derived type must be listed;
* ``density_guess`` (g/cm^3) for building the box, optional ``timestep_fs``;
* optional ``reference``: published values a run of the system is validated against, each with
  its ``source`` (e.g. ``density_298K: {value, tolerance, unit, source}``); read by
  ``benchmarks/validate_reference.py``.

Sources, descriptions and ``reference`` do not enter ``SystemDef.fingerprint()``, the hash that
decides whether existing reference data still belong to the file.

Everything is in LAMMPS ``real`` units.  A new system is a new file: nothing here is specific
to methanol or water.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, load_yaml


AVOGADRO = 6.02214076e23

#: Where ``load_system("name")`` looks: ``$HIPCG_DATASETS`` first, then the repository's datasets/.
DATASETS_DIR = Path(__file__).resolve().parent.parent / "datasets"


class SystemFileError(ConfigError):
    """A system file is missing or malformed; the message names the file and the key."""


@dataclass
class Atom:
    name: str
    type: str
    charge: float
    xyz: tuple[float, float, float]


@dataclass
class SystemDef:
    """A parsed, validated system file (see the module docstring for the format)."""

    name: str
    path: Path
    description: str
    force_field: dict
    atom_types: dict[str, dict]          # insertion order gives the LAMMPS type numbers (1-based)
    bond_types: dict[str, dict]
    angle_types: dict[str, dict]
    dihedral_types: dict[str, dict]
    residue: str
    atoms: list[Atom]
    bonds: list[tuple[int, int]]         # 0-based atom indices within the molecule
    angles: list[tuple[int, int, int]] = field(default_factory=list)
    dihedrals: list[tuple[int, int, int, int]] = field(default_factory=list)
    density_guess: float = 1.0
    timestep_fs: float = 1.0
    reference: dict = field(default_factory=dict)

    # --- derived quantities -------------------------------------------------------------
    @property
    def type_names(self) -> list[str]:
        return list(self.atom_types)

    def type_id(self, name: str) -> int:
        return self.type_names.index(name) + 1

    @property
    def atoms_per_molecule(self) -> int:
        return len(self.atoms)

    @property
    def molecule_mass(self) -> float:
        """g/mol."""
        return sum(self.atom_types[a.type]["mass"] for a in self.atoms)

    def box_length(self, n_molecules: int, density: float | None = None) -> float:
        """Edge (Å) of the cubic box holding ``n_molecules`` at ``density`` g/cm^3."""
        density = density or self.density_guess
        volume_cm3 = n_molecules * self.molecule_mass / AVOGADRO / density
        return (volume_cm3 * 1e24) ** (1.0 / 3.0)

    def bond_key(self, i: int, j: int) -> str:
        return _lookup(self.bond_types, [self.atoms[i].type, self.atoms[j].type])

    def angle_key(self, i: int, j: int, k: int) -> str:
        return _lookup(self.angle_types, [self.atoms[x].type for x in (i, j, k)])

    def dihedral_key(self, i: int, j: int, k: int, m: int) -> str:
        return _lookup(self.dihedral_types, [self.atoms[x].type for x in (i, j, k, m)])

    # --- LAMMPS text ----------------------------------------------------------------------
    def molecule_file(self) -> str:
        """The molecule template as a LAMMPS molecule file (``molecule`` command)."""
        bt, at, dt = (list(self.bond_types), list(self.angle_types), list(self.dihedral_types))
        lines = [f"# {self.name}: {self.residue} ({self.force_field.get('name', '')})", "",
                 f"{len(self.atoms)} atoms"]
        if self.bonds:
            lines.append(f"{len(self.bonds)} bonds")
        if self.angles:
            lines.append(f"{len(self.angles)} angles")
        if self.dihedrals:
            lines.append(f"{len(self.dihedrals)} dihedrals")
        lines += ["", "Coords", ""]
        lines += [f"{n + 1} {a.xyz[0]:.6f} {a.xyz[1]:.6f} {a.xyz[2]:.6f}  # {a.name}"
                  for n, a in enumerate(self.atoms)]
        lines += ["", "Types", ""] + [f"{n + 1} {self.type_id(a.type)}" for n, a in enumerate(self.atoms)]
        lines += ["", "Charges", ""] + [f"{n + 1} {a.charge:.6f}" for n, a in enumerate(self.atoms)]
        for title, items, keyfn, keys in (("Bonds", self.bonds, self.bond_key, bt),
                                          ("Angles", self.angles, self.angle_key, at),
                                          ("Dihedrals", self.dihedrals, self.dihedral_key, dt)):
            if items:
                lines += ["", title, ""]
                lines += [f"{n + 1} {keys.index(keyfn(*t)) + 1} " + " ".join(str(x + 1) for x in t)
                          for n, t in enumerate(items)]
        return "\n".join(lines) + "\n"

    def create_box_args(self) -> str:
        """``create_box`` arguments after the region: topology type counts and head-room."""
        args = []
        for kw, n in (("bond", len(self.bond_types)), ("angle", len(self.angle_types)),
                      ("dihedral", len(self.dihedral_types))):
            if n:
                args.append(f"{kw}/types {n}")
        # Generous head-room: LAMMPS stores each bond/angle/dihedral with one of its atoms.
        args.append(f"extra/bond/per/atom {max(4, len(self.bonds))}")
        if self.angles:
            args.append(f"extra/angle/per/atom {max(6, len(self.angles))}")
        if self.dihedrals:
            args.append(f"extra/dihedral/per/atom {max(9, len(self.dihedrals))}")
        args.append("extra/special/per/atom 12")
        return " ".join(args)

    def force_field_commands(self, cutoff: float, kspace_accuracy: float) -> list[str]:
        """Masses, styles and coefficients (everything after ``create_box``)."""
        ff = self.force_field
        cmds = [f"mass {self.type_id(t)} {p['mass']}  # {t}" for t, p in self.atom_types.items()]
        cmds.append(f"pair_style {ff['pair_style']} {cutoff}")
        if ff.get("pair_modify"):
            cmds.append(f"pair_modify {ff['pair_modify']}")
        for t, p in self.atom_types.items():
            coeffs = " ".join(str(c) for c in p["pair"])
            cmds.append(f"pair_coeff {self.type_id(t)} {self.type_id(t)} {coeffs}  # {t}")
        if ff.get("kspace_style"):
            cmds.append(f"kspace_style {ff['kspace_style']} {kspace_accuracy}")
        for kind, table in (("bond", self.bond_types), ("angle", self.angle_types),
                            ("dihedral", self.dihedral_types)):
            if not table:
                continue
            cmds.append(f"{kind}_style {ff[kind + '_style']}")
            for n, (key, p) in enumerate(table.items(), start=1):
                cmds.append(f"{kind}_coeff {n} " + " ".join(str(c) for c in p["coeffs"]) + f"  # {key}")
        cmds.append(f"special_bonds {ff.get('special_bonds', 'lj/coul 0.0 0.0 0.0')}")
        return cmds

    def shake_command(self, fix_id: str = "rigid") -> str | None:
        """``fix shake`` for the constrained bond and angle types, or None for a flexible model."""
        shake = self.force_field.get("shake")
        if not shake:
            return None
        bonds = [list(self.bond_types).index(_lookup(self.bond_types, k.split("-"), "shake.bonds")) + 1
                 for k in shake.get("bonds", [])]
        angles = [list(self.angle_types).index(_lookup(self.angle_types, k.split("-"), "shake.angles")) + 1
                  for k in shake.get("angles", [])]
        cmd = f"fix {fix_id} all shake 1.0e-6 200 0"
        if bonds:
            cmd += " b " + " ".join(map(str, bonds))
        if angles:
            cmd += " a " + " ".join(map(str, angles))
        return cmd

    def fingerprint(self) -> str:
        """Hash of what a simulation of this system depends on (parameters, molecule, timestep).

        Descriptions, literature sources and validation targets are left out, so that editing
        them keeps existing reference data valid, while any change to the physics does not.
        """
        def physics(value):
            if isinstance(value, dict):
                return {str(k): physics(v) for k, v in value.items() if k != "source"}
            if isinstance(value, (list, tuple)):
                return [physics(v) for v in value]
            return value

        content = {
            "force_field": physics(self.force_field), "atom_types": physics(self.atom_types),
            "bond_types": physics(self.bond_types), "angle_types": physics(self.angle_types),
            "dihedral_types": physics(self.dihedral_types), "residue": self.residue,
            "atoms": [[a.name, a.type, a.charge, list(a.xyz)] for a in self.atoms],
            "bonds": self.bonds, "density_guess": self.density_guess,
            "timestep_fs": self.timestep_fs}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> dict:
        """What a metadata file records about the system."""
        return {
            "name": self.name,
            "file": str(self.path),
            "force_field": self.force_field.get("name"),
            "force_field_source": " ".join(str(self.force_field.get("source", "")).split()),
            "residue": self.residue,
            "atom_names": [a.name for a in self.atoms],
            "atom_types": [a.type for a in self.atoms],
            "type_names": {str(self.type_id(t)): t for t in self.atom_types},
            "elements": {str(self.type_id(t)): p.get("element") for t, p in self.atom_types.items()},
            "masses": {str(self.type_id(t)): p["mass"] for t, p in self.atom_types.items()},
            "molecule_mass": self.molecule_mass,
            "rigid": bool(self.force_field.get("shake")),
            "fingerprint": self.fingerprint(),
        }


def _lookup(table: dict, types: list[str], what: str | None = None) -> str:
    """Key of ``table`` matching the type sequence forwards or backwards."""
    for key in ("-".join(types), "-".join(reversed(types))):
        if key in table:
            return key
    raise KeyError("-".join(types) if what is None else f"{what}: {'-'.join(types)}")


def dataset_roots() -> list[Path]:
    """Where datasets are looked up by name: ``$HIPCG_DATASETS`` (path list) first, then the
    repository's ``datasets/``."""
    roots = [Path(d) for d in os.environ.get("HIPCG_DATASETS", "").split(os.pathsep) if d]
    roots.append(DATASETS_DIR)
    return roots


def locate_system_yaml(name_or_path: str | os.PathLike) -> Path | None:
    """A ``system.yaml`` from a path, a dataset directory, or a name under :func:`dataset_roots`
    (any kind of system: the all-atom ones here, the chain systems of hipcg.dynamics); None."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir() and (p / "system.yaml").is_file():
        return p / "system.yaml"
    for root in dataset_roots():
        cand = root / str(name_or_path) / "system.yaml"
        if cand.is_file():
            return cand
    return None


def find_system_file(name_or_path: str | os.PathLike) -> Path:
    """A system file path from a path, a dataset directory, or a name under the datasets dirs."""
    found = locate_system_yaml(name_or_path)
    if found is not None:
        return found
    roots = dataset_roots()
    known = sorted(d.name for r in roots if r.is_dir() for d in r.iterdir() if (d / "system.yaml").is_file())
    raise SystemFileError(f"no system {str(name_or_path)!r}: not a file, and not one of {known} "
                       f"in {', '.join(map(str, roots))}")


def _parse_molecule(path: Path, mol: dict, atom_types: dict, need) -> tuple[list, list, list[str]]:
    """The ``molecule:`` section: atoms (checked against ``atom_types``) and bonds by name."""
    atoms = []
    for n, a in enumerate(need(mol, "atoms", "molecule.")):
        for key in ("name", "type", "charge", "xyz"):
            need(a, key, f"molecule.atoms[{n}].")
        if a["type"] not in atom_types:
            raise SystemFileError(f"{path}: molecule.atoms[{n}] ({a['name']}): type {a['type']!r} "
                               f"is not in atom_types {list(atom_types)}")
        if len(a["xyz"]) != 3:
            raise SystemFileError(f"{path}: molecule.atoms[{n}] ({a['name']}): xyz needs 3 numbers")
        atoms.append(Atom(str(a["name"]), str(a["type"]), float(a["charge"]),
                          tuple(float(x) for x in a["xyz"])))
    names = [a.name for a in atoms]
    if len(set(names)) != len(names):
        raise SystemFileError(f"{path}: molecule.atoms: atom names must be unique, got {names}")
    bonds = []
    for n, b in enumerate(mol.get("bonds") or []):
        try:
            bonds.append(tuple(sorted((names.index(b[0]), names.index(b[1])))))
        except (ValueError, IndexError, TypeError):
            raise SystemFileError(f"{path}: molecule.bonds[{n}] = {b!r}: expected two atom names "
                               f"from {names}") from None
    return atoms, bonds, names


def load_system(name_or_path: str | os.PathLike, text: str | None = None) -> SystemDef:
    """Read and validate a system file; errors name the file and the offending key.

    ``text``: validate this content (e.g. an earlier version of the file) in place of the file's.
    """
    path = find_system_file(name_or_path)
    try:
        raw = load_yaml(path, text, what="system file")
    except ConfigError as err:
        raise SystemFileError(str(err)) from err
    if not isinstance(raw, dict):
        raise SystemFileError(f"{path}: expected a mapping at the top level")

    def need(mapping: dict, key: str, where: str):
        if not isinstance(mapping, dict) or key not in mapping:
            raise SystemFileError(f"{path}: missing key '{where}{key}'")
        return mapping[key]

    ff = need(raw, "force_field", "")
    for key in ("name", "source", "pair_style"):
        need(ff, key, "force_field.")
    atom_types = need(raw, "atom_types", "")
    for t, p in atom_types.items():
        for key in ("mass", "pair"):
            need(p, key, f"atom_types.{t}.")
    tables = {}
    for kind in ("bond", "angle", "dihedral"):
        table = raw.get(f"{kind}_types") or {}
        for k, p in table.items():
            need(p, "coeffs", f"{kind}_types.{k}.")
        if table:
            need(ff, f"{kind}_style", "force_field.")
        tables[kind] = table
    mol = need(raw, "molecule", "")
    atoms, bonds, names = _parse_molecule(path, mol, atom_types, need)
    system = SystemDef(
        name=str(raw.get("name", path.parent.name)), path=path,
        description=str(raw.get("description", "")), force_field=ff, atom_types=atom_types,
        bond_types=tables["bond"], angle_types=tables["angle"], dihedral_types=tables["dihedral"],
        residue=str(mol.get("residue", "MOL"))[:4], atoms=atoms, bonds=bonds,
        density_guess=float(raw.get("density_guess", 1.0)),
        timestep_fs=float(raw.get("timestep_fs", 1.0)), reference=raw.get("reference") or {})
    system.angles, system.dihedrals = _derive_angles_dihedrals(len(atoms), bonds)
    if abs(sum(a.charge for a in atoms)) > 1e-6:
        raise SystemFileError(f"{path}: molecule charges sum to {sum(a.charge for a in atoms):.6f}, not 0")
    # Every derived term must have parameters: report the first one that does not.
    for kind, items, fn in (("bond", system.bonds, system.bond_key),
                            ("angle", system.angles, system.angle_key),
                            ("dihedral", system.dihedrals, system.dihedral_key)):
        for t in items:
            try:
                fn(*t)
            except KeyError as err:
                raise SystemFileError(
                    f"{path}: no {kind}_types entry for {err.args[0]} (atoms "
                    f"{'-'.join(names[i] for i in t)})") from None
    try:
        system.shake_command()
    except KeyError as err:
        raise SystemFileError(f"{path}: force_field.{err.args[0]} names no known type") from None
    return system


def _derive_angles_dihedrals(n: int, bonds: list[tuple[int, int]]):
    """All i-j-k angles and i-j-k-l proper dihedrals of the bond graph, each listed once."""
    nbr: list[set[int]] = [set() for _ in range(n)]
    for i, j in bonds:
        nbr[i].add(j)
        nbr[j].add(i)
    angles = [(i, j, k) for j in range(n) for i in sorted(nbr[j]) for k in sorted(nbr[j]) if i < k]
    dihedrals = []
    for j, k in bonds:
        for i in sorted(nbr[j] - {k}):
            for m in sorted(nbr[k] - {j}):
                if i != m:
                    dihedrals.append((i, j, k, m))
    return angles, dihedrals
