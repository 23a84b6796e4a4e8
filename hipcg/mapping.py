"""Atom -> bead mapping: the mapping-file schema, its validation, and a streaming mapper.

A mapping file (YAML) lists molecule types.  Each is chosen by residue name (``resname``) or
an MDAnalysis selection (``select``); one MDAnalysis residue is one molecule (LAMMPS data
files give one residue per molecule-ID).  Each molecule type has beads, each with a name, a
bead type, the atoms it contains (by atom name) and position weights (``mass``: centre of
mass, the default; ``geometry``: centroid).  ``beads: auto`` (the default) is one bead per
molecule holding every atom::

    molecules: {MOH: MeOH}              # one-line form: resname MOH -> one bead of type MeOH

    molecules:                          # long form
      - resname: HEX
        beads:
          - {name: A, type: C3, atoms: [C1, C2, C3, H1, H2, ...]}
          - {name: B, type: C3, atoms: [C4, C5, C6, ...], weights: geometry}

For topologies without atom names (a LAMMPS data file) a molecule type may give
``atom_names``: the names of a molecule's atoms in topology order.

Bead force = sum of the forces on its atoms (the force map consistent with a centre-of-mass
map without shared atoms), bead mass = sum of atom masses, bead velocity = total momentum /
bead mass.  Everything is in LAMMPS ``real`` units (Å, kcal/(mol Å), Å/fs, g/mol).

:class:`CGMap` turns a mapping and a Universe into index arrays once; :meth:`CGMap.apply` is
then a handful of numpy gathers and segment sums per frame, and :func:`map_trajectory`
streams frames so memory does not grow with trajectory length.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .config import NonNegativeInt, PositiveInt
from .errors import DataError

WEIGHTS = ("mass", "geometry")
_MAX_LISTED = 5  # how many offending atoms/residues an error message lists


@dataclass
class MapSettings:
    """The ``map:`` section (``hipcg map``'s --start/--stop/--stride): which frames to map."""

    mapping: Path
    start: NonNegativeInt | None = None
    stop: NonNegativeInt | None = None
    stride: PositiveInt | None = None
    velocities: bool = True


class MappingError(DataError):
    """A mapping file is malformed or does not fit the topology / trajectory."""


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class BeadSpec:
    name: str
    type: str
    atoms: tuple[str, ...] | None  # None: every atom of the molecule (``beads: auto``)
    weights: str = "mass"


@dataclass(frozen=True)
class MoleculeSpec:
    label: str  # for messages and the dataset metadata
    beads: tuple[BeadSpec, ...]
    resname: str | None = None
    select: str | None = None
    atom_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Mapping:
    molecules: tuple[MoleculeSpec, ...]
    source: str = "<mapping>"  # file it came from, for error messages; not part of the hash

    def to_dict(self) -> dict:
        return {"molecules": [asdict(m) for m in self.molecules]}

    def hash(self) -> str:
        """sha256 of the normalised mapping: equal for files that differ only in layout."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def type_names(self) -> list[str]:
        """Bead types in order of first appearance; dataset bead types index this list."""
        names: dict[str, None] = {}
        for mol in self.molecules:
            for bead in mol.beads:
                names.setdefault(bead.type)
        return list(names)


def _err(source: str, where: str, message: str) -> MappingError:
    return MappingError(f"{source}: {where}: {message}")


def _names(value, source: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, (list, tuple)) or not value:
        raise _err(source, where, "expected a non-empty list of atom names")
    return tuple(str(v) for v in value)


def _parse_molecule(entry, index: int, source: str) -> MoleculeSpec:
    where = f"molecules[{index}]"
    if not isinstance(entry, dict):
        raise _err(source, where, f"expected a mapping, got {entry!r}")
    known = {"resname", "select", "name", "beads", "type", "weights", "atom_names"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise _err(source, where, f"unknown key(s) {unknown}; known: {sorted(known)}")
    resname, select = entry.get("resname"), entry.get("select")
    if (resname is None) == (select is None):
        raise _err(source, where, "give exactly one of 'resname' or 'select'")
    label = str(entry.get("name") or resname or select)
    where = f"molecule {label!r}"
    weights = entry.get("weights", "mass")
    if weights not in WEIGHTS:
        raise _err(source, where, f"weights must be one of {WEIGHTS}, got {weights!r}")
    beads_in = entry.get("beads", "auto")
    if beads_in == "auto":
        btype = str(entry.get("type") or label)
        beads = (BeadSpec(name=btype, type=btype, atoms=None, weights=weights),)
    else:
        if "type" in entry:
            raise _err(source, where, "'type' is only for 'beads: auto'; give each bead a type")
        if not isinstance(beads_in, list) or not beads_in:
            raise _err(source, where, "'beads' must be 'auto' or a non-empty list")
        beads = []
        for b, bead in enumerate(beads_in):
            bwhere = f"{where}, beads[{b}]"
            if not isinstance(bead, dict):
                raise _err(source, bwhere, f"expected a mapping, got {bead!r}")
            missing = [k for k in ("name", "type", "atoms") if k not in bead]
            if missing:
                raise _err(source, bwhere, f"missing key(s) {missing}")
            extra = sorted(set(bead) - {"name", "type", "atoms", "weights"})
            if extra:
                raise _err(source, bwhere, f"unknown key(s) {extra}")
            bw = bead.get("weights", weights)
            if bw not in WEIGHTS:
                raise _err(source, bwhere, f"weights must be one of {WEIGHTS}, got {bw!r}")
            beads.append(BeadSpec(name=str(bead["name"]), type=str(bead["type"]),
                                  atoms=_names(bead["atoms"], source, bwhere), weights=bw))
        beads = tuple(beads)
        # Static checks that need no topology: an atom in two beads of the same molecule.
        seen: dict[str, str] = {}
        twice = []
        for bead in beads:
            for atom in bead.atoms:
                if atom in seen:
                    twice.append(f"{atom} ({seen[atom]}, {bead.name})")
                seen[atom] = bead.name
        if twice:
            raise _err(source, where, f"{len(twice)} atom(s) in two beads: "
                       + ", ".join(twice[:_MAX_LISTED]) + (" ..." if len(twice) > _MAX_LISTED else ""))
    atom_names = entry.get("atom_names")
    if atom_names is not None:
        atom_names = _names(atom_names, source, f"{where}, atom_names")
    return MoleculeSpec(label=label, beads=beads, resname=None if resname is None else str(resname),
                        select=select, atom_names=atom_names)


def parse_mapping(data, source: str = "<mapping>") -> Mapping:
    """Validate a mapping already loaded from YAML/JSON into :class:`Mapping`."""
    if not isinstance(data, dict) or "molecules" not in data:
        raise MappingError(f"{source}: expected a top-level 'molecules' key")
    extra = sorted(set(data) - {"molecules"})
    if extra:
        raise MappingError(f"{source}: unknown top-level key(s) {extra}")
    mols = data["molecules"]
    if isinstance(mols, dict):  # one-line form {resname: bead type}
        mols = [{"resname": k, "type": v} if not isinstance(v, dict) else {"resname": k, **v}
                for k, v in mols.items()]
    if not isinstance(mols, list) or not mols:
        raise MappingError(f"{source}: 'molecules' must be a non-empty list or mapping")
    specs = tuple(_parse_molecule(entry, i, source) for i, entry in enumerate(mols))
    labels = [m.label for m in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise MappingError(f"{source}: molecule type(s) listed twice: {dup}")
    return Mapping(molecules=specs, source=source)


def load_mapping(path: str | os.PathLike) -> Mapping:
    """Read and validate a YAML mapping file."""
    from .config import ConfigError, load_yaml

    path = Path(path)
    try:
        data = load_yaml(path, what="mapping file")
    except ConfigError as err:
        raise MappingError(str(err)) from None
    return parse_mapping(data, source=str(path))


# --------------------------------------------------------------------------- compiled map


@dataclass
class CGFrame:
    """One mapped frame, real units; ``box`` rows are the box vectors."""

    frame: int  # index in the source trajectory
    time: float
    positions: np.ndarray  # (n_beads, 3) float64, wrapped into the box
    forces: np.ndarray  # (n_beads, 3)
    velocities: np.ndarray | None  # (n_beads, 3) or None
    box: np.ndarray  # (3, 3)
    step: int | None = None  # MD step of the frame, when the file says (LAMMPS dumps)


def _residue_label(atoms, i: int) -> str:
    parts = []
    if hasattr(atoms, "resnames"):
        parts.append(str(atoms.resnames[i]))
    if hasattr(atoms, "resids"):
        parts.append(f"resid {atoms.resids[i]}")
    return " ".join(parts) or f"atom index {atoms.indices[i]}"


def _atom_label(atoms, i: int) -> str:
    name = f"{atoms.names[i]} " if hasattr(atoms, "names") else ""
    return f"{name}(index {atoms.indices[i]}, {_residue_label(atoms, i)})"


def _listing(items: list[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    more = f" ... ({total} in all)" if total > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _molecule_owners(atoms, mapping: "Mapping") -> np.ndarray:
    """Index of the mapping's molecule spec that claims each atom; every atom exactly once."""
    src = mapping.source
    n = len(atoms)
    owner = np.full(n, -1, dtype=np.int64)  # which molecule spec claims each atom
    for k, mol in enumerate(mapping.molecules):
        if mol.resname is not None:
            if not hasattr(atoms, "resnames"):
                raise MappingError(f"{src}: molecule {mol.label!r}: the topology has no "
                                   "residue names; choose molecules with 'select:' instead")
            mask = atoms.resnames == mol.resname
        else:
            try:
                chosen = atoms.select_atoms(mol.select)
            except Exception as err:  # MDAnalysis raises several types for bad selections
                raise MappingError(f"{src}: molecule {mol.label!r}: bad selection "
                                   f"{mol.select!r}: {err}") from None
            mask = np.isin(atoms.indices, chosen.indices)
        if not mask.any():
            raise MappingError(f"{src}: molecule {mol.label!r}: matches no atoms in the topology")
        clash = np.flatnonzero(mask & (owner >= 0))
        if len(clash):
            other = mapping.molecules[owner[clash[0]]].label
            raise MappingError(
                f"{src}: atoms matched by both {other!r} and {mol.label!r}: "
                + _listing([_atom_label(atoms, i) for i in clash[:_MAX_LISTED]], len(clash)))
        owner[mask] = k
    loose = np.flatnonzero(owner < 0)
    if len(loose):
        residues = list(dict.fromkeys(_residue_label(atoms, i) for i in loose[:1000]))
        raise MappingError(
            f"{src}: {len(loose)} atom(s) belong to no molecule type in the mapping "
            f"(molecule type with no mapping?): residues " + _listing(residues))
    return owner


@dataclass
class CGMap:
    """A mapping bound to one topology: index arrays built once, applied per frame.

    Atoms are gathered in bead order (``order``) so that each bead's atoms are contiguous
    (segment starts ``bead_start``); every per-frame operation is then a gather and a
    segment sum (``np.add.reduceat``).
    """

    mapping: Mapping
    order: np.ndarray  # (n_mapped,) universe atom indices, bead by bead
    bead_start: np.ndarray  # (n_beads,) segment starts into ``order``
    weights: np.ndarray  # (n_mapped,) position weight of each atom within its bead (sums to 1)
    atom_masses: np.ndarray  # (n_mapped,)
    ref: np.ndarray  # (n_mapped,) universe index of the first atom of the atom's molecule
    bead_ref: np.ndarray  # (n_beads,) same, per bead
    masses: np.ndarray  # (n_beads,)
    bead_types: np.ndarray  # (n_beads,) int into type_names
    type_names: list[str]
    bead_names: list[str]
    molecule_ids: np.ndarray  # (n_beads,) molecule (residue) number, 0-based, in topology order
    n_atoms_universe: int

    @property
    def n_beads(self) -> int:
        return len(self.bead_start)

    # ----------------------------------------------------------------- build
    @classmethod
    def build(cls, atoms, mapping: Mapping) -> "CGMap":
        """Bind ``mapping`` to a Universe or AtomGroup; every atom must land in exactly one bead."""
        atoms = getattr(atoms, "atoms", atoms)
        src = mapping.source
        n = len(atoms)
        if n == 0:
            raise MappingError(f"{src}: the topology has no atoms")
        if not hasattr(atoms, "masses"):
            raise MappingError(f"{src}: the topology has no atom masses")
        masses_all = np.asarray(atoms.masses, dtype=np.float64)
        owner = _molecule_owners(atoms, mapping)

        # Molecules = residues, in topology order of their first atom.
        resindex = np.asarray(atoms.resindices)
        res_order, first = np.unique(resindex, return_index=True)
        atom_sort = np.argsort(resindex, kind="stable")  # atoms grouped by residue, stable
        counts = np.bincount(np.searchsorted(res_order, resindex), minlength=len(res_order))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        mol_sequence = np.argsort(first, kind="stable")
        names_all = np.asarray(atoms.names) if hasattr(atoms, "names") else None

        type_index = {t: i for i, t in enumerate(mapping.type_names)}
        signature_cache: dict = {}
        order, starts, weights, amass, ref = [], [], [], [], []
        bmass, btype, bname, bmol, bref = [], [], [], [], []
        offset = 0
        for mol_no, r in enumerate(mol_sequence):
            local = atom_sort[bounds[r]:bounds[r + 1]]  # positions in ``atoms``
            owners = np.unique(owner[local])
            if len(owners) > 1:
                labels = [mapping.molecules[o].label for o in owners]
                raise MappingError(f"{src}: residue {_residue_label(atoms, local[0])} is split "
                                   f"between molecule types {labels}")
            spec = mapping.molecules[owners[0]]
            if spec.atom_names is not None:
                if len(spec.atom_names) != len(local):
                    raise MappingError(
                        f"{src}: molecule {spec.label!r}: atom_names lists {len(spec.atom_names)} "
                        f"atoms but residue {_residue_label(atoms, local[0])} has {len(local)}")
                mol_names = spec.atom_names
            elif names_all is not None:
                mol_names = tuple(names_all[local])
            else:
                mol_names = None
            key = (owners[0], mol_names if spec.beads[0].atoms is not None else len(local))
            if key not in signature_cache:
                signature_cache[key] = _bead_slots(spec, mol_names, len(local), src,
                                                   _residue_label(atoms, local[0]))
            ref_atom = atoms.indices[local[0]]
            for bead, slots in zip(spec.beads, signature_cache[key]):
                sel = local[slots]
                m = masses_all[sel]
                if bead.weights == "mass":
                    if m.sum() <= 0:
                        raise MappingError(f"{src}: molecule {spec.label!r}, bead {bead.name!r}: "
                                           "total mass is zero; use 'weights: geometry'")
                    w = m / m.sum()
                else:
                    w = np.full(len(sel), 1.0 / len(sel))
                order.append(atoms.indices[sel])
                weights.append(w)
                amass.append(m)
                ref.append(np.full(len(sel), ref_atom))
                starts.append(offset)
                offset += len(sel)
                bmass.append(m.sum())
                btype.append(type_index[bead.type])
                bname.append(bead.name)
                bmol.append(mol_no)
                bref.append(ref_atom)
        return cls(mapping=mapping, order=np.concatenate(order), bead_start=np.asarray(starts),
                   weights=np.concatenate(weights), atom_masses=np.concatenate(amass),
                   ref=np.concatenate(ref), bead_ref=np.asarray(bref), masses=np.asarray(bmass),
                   bead_types=np.asarray(btype, dtype=np.int64), type_names=mapping.type_names,
                   bead_names=bname, molecule_ids=np.asarray(bmol, dtype=np.int64),
                   n_atoms_universe=len(atoms.universe.atoms))

    # ----------------------------------------------------------------- apply
    def __post_init__(self):
        # Per-frame work runs on (3, n) rows: numpy is slow when the innermost loop is the
        # length-3 xyz axis (broadcasting a box vector over (n, 3) is ~10x slower).  Segment
        # sums are one np.bincount over the flattened rows with index row*n_beads + bead,
        # several times faster than np.add.reduceat.  When the topology already lists atoms
        # bead by bead (the usual case) the gather is skipped.
        n = len(self.order)
        self._identity = n == self.n_atoms_universe and bool(
            (self.order == np.arange(n)).all())
        sizes = np.diff(np.append(self.bead_start, n))
        bead_of_atom = np.repeat(np.arange(self.n_beads), sizes)
        self._bead_of_atom = bead_of_atom
        self._buf = self._seg = None  # scratch (rows, n) buffer and its bincount index
        where = np.empty(self.n_atoms_universe, dtype=np.int64)
        where[self.order] = np.arange(n)
        # Gathers are 1-D np.take on flattened arrays with precomputed flat indices: much
        # faster than fancy indexing along an axis, and the (n, 3) -> (3, n) transpose comes
        # for free.
        xyz = np.arange(3)[:, None]
        self._flat_order = (3 * self.order[None, :] + xyz).ravel()
        self._flat_ref = (xyz * n + where[self.ref][None, :]).ravel()
        self._flat_bead_ref = (xyz * n + where[self.bead_ref][None, :]).ravel()

    def _fill(self, out: np.ndarray, values: np.ndarray) -> None:
        """(n_atoms, 3) universe array -> ``out`` (3, n) float64 rows, in bead order."""
        if self._identity:
            np.copyto(out, values.T)
        else:
            flat = np.take(np.ascontiguousarray(values).ravel(), self._flat_order)
            np.copyto(out, flat.reshape(3, -1))

    def apply(self, positions, forces, box, velocities=None):
        """Map one frame (arrays over all universe atoms, real units; ``box`` rows = vectors).

        Returns ``(bead_positions, bead_forces, bead_velocities or None)`` in float64.
        Not re-entrant: one CGMap reuses one scratch buffer (no per-frame allocation).
        """
        box = np.asarray(box, dtype=np.float64)
        rows = 9 if velocities is not None else 6
        n = len(self.order)
        if self._buf is None or self._buf.shape[0] < rows:
            self._buf = np.empty((rows, n))
            self._seg = (np.arange(rows)[:, None] * self.n_beads + self._bead_of_atom).ravel()
        buf = self._buf[:rows]
        x = buf[0:3]
        self._fill(x, positions)
        centres = np.take(x.ravel(), self._flat_bead_ref).reshape(3, -1)  # each bead's anchor
        # Minimum image of each atom relative to its molecule's first atom makes molecules
        # whole.  Hand-written rather than MDAnalysis ``make_whole``/``unwrap`` because those
        # walk bonds molecule by molecule in Python-level loops and need bond information;
        # this is one vectorised pass, in fractional coordinates so triclinic boxes work.
        # It assumes every molecule spans less than half the box in each direction.
        x -= np.take(x.ravel(), self._flat_ref).reshape(3, n)  # x now holds d = x - anchor
        ortho = _orthorhombic(box)
        if ortho:
            lengths = box.diagonal()[:, None]
            frac = x * (1.0 / lengths)
            np.rint(frac, out=frac)
            frac *= lengths
            x -= frac
        else:
            inv = np.linalg.inv(box)
            frac = inv.T @ x  # columns: fractional coordinates
            frac -= np.rint(frac)
            np.matmul(box.T, frac, out=x)
        x *= self.weights
        self._fill(buf[3:6], forces)
        if velocities is not None:
            self._fill(buf[6:9], velocities)
            buf[6:9] *= self.atom_masses
        # All segment sums in one np.bincount (float64 accumulation).
        sums = np.bincount(self._seg[:rows * n], buf.ravel(),
                           minlength=rows * self.n_beads).reshape(rows, -1)
        centres += sums[0:3]
        # Centres are wrapped back into the box: the CG model sees an ordinary periodic
        # configuration (as LAMMPS keeps one), independent of how the source was wrapped.
        if ortho:
            centres -= lengths * np.floor(centres / lengths)
            centres = np.ascontiguousarray(centres.T)
        else:
            centres = centres.T
            frac = centres @ inv
            frac -= np.floor(frac)
            centres = frac @ box
        bead_forces = sums[3:6].T.copy()
        bead_vel = None
        if velocities is not None:
            bead_vel = sums[6:9].T / self.masses[:, None]
        return centres, bead_forces, bead_vel


def _orthorhombic(box: np.ndarray) -> bool:
    # Scalar comparisons: np.triu_indices & co. cost more than the whole minimum image.
    return box[0, 1] == box[0, 2] == box[1, 0] == box[1, 2] == box[2, 0] == box[2, 1] == 0.0


def _box_matrix(dimensions: np.ndarray) -> np.ndarray:
    """[a, b, c, alpha, beta, gamma] -> rows = box vectors; MDAnalysis' general conversion
    is a sizeable part of the per-frame cost, so rectangular boxes take a shortcut."""
    dims = np.asarray(dimensions, dtype=np.float64)
    if dims[3] == dims[4] == dims[5] == 90.0:
        return np.diag(dims[:3])
    from MDAnalysis.lib.mdamath import triclinic_vectors

    return triclinic_vectors(dims).astype(np.float64)


def _bead_slots(spec: MoleculeSpec, names, n_atoms: int, src: str, residue: str) -> list[np.ndarray]:
    """Positions within one molecule of each bead's atoms, with every consistency check."""
    where = f"{src}: molecule {spec.label!r} ({residue})"
    if spec.beads[0].atoms is None:  # beads: auto
        return [np.arange(n_atoms)]
    if names is None:
        raise MappingError(f"{where}: the topology has no atom names; name the atoms with "
                           "'atom_names: [...]' in the mapping (names in topology order)")
    position: dict[str, int] = {}
    dups = []
    for i, name in enumerate(names):
        if name in position:
            dups.append(name)
        position[name] = i
    if dups:
        raise MappingError(f"{where}: atom names are not unique in the molecule: "
                           + _listing(sorted(set(dups))))
    slots, used = [], np.zeros(n_atoms, dtype=np.int64)
    for bead in spec.beads:
        missing = [a for a in bead.atoms if a not in position]
        if missing:
            raise MappingError(f"{where}: bead {bead.name!r}: atom name(s) not in the topology: "
                               + _listing(missing) + f"; the molecule has {list(names)}")
        idx = np.array([position[a] for a in bead.atoms])
        used[idx] += 1
        slots.append(idx)
    left = [names[i] for i in np.flatnonzero(used == 0)]
    if left:
        raise MappingError(f"{where}: {len(left)} atom(s) in no bead: " + _listing(left))
    return slots


# --------------------------------------------------------------------------- units & streaming

def _universe_and_factors(source):
    """(Universe, factors to LAMMPS real) of a hipcg Trajectory or an MDAnalysis Universe.

    A :class:`hipcg.trajectory.Trajectory` knows its units (e.g. LAMMPS ``metal`` dumps, extxyz
    from ASE); a bare Universe gets them from what its reader declares.
    """
    from .trajectory import Trajectory, reader_unit_factors

    if isinstance(source, Trajectory):
        return source.universe, {"length": 1.0, "force": source.force_factor,
                                 "velocity": source.velocity_factor}
    u = source.universe if hasattr(source, "universe") else source
    return u, reader_unit_factors(u.trajectory)


def map_trajectory(universe, cgmap: CGMap | Mapping, start: int | None = None,
                   stop: int | None = None, step: int | None = None,
                   velocities: bool | None = None, source: str | None = None) -> Iterator[CGFrame]:
    """Yield :class:`CGFrame` for ``universe.trajectory[start:stop:step]``, one at a time.

    ``velocities``: None maps them when the trajectory has them; True requires them.
    Raises :class:`MappingError` for a trajectory without forces or with non-finite values.
    """
    u, f = _universe_and_factors(universe)
    if isinstance(cgmap, Mapping):
        cgmap = CGMap.build(u, cgmap)
    traj = u.trajectory
    source = source or str(getattr(traj, "filename", None) or "<trajectory>")
    if len(u.atoms) != cgmap.n_atoms_universe:
        raise MappingError(f"{source}: {len(u.atoms)} atoms but the map was built for "
                           f"{cgmap.n_atoms_universe}")
    for ts in traj[start:stop:step]:
        if not ts.has_forces:
            raise MappingError(f"{source}: frame {ts.frame}: no forces in the trajectory "
                               "(force matching needs them; LAMMPS: dump ... fx fy fz)")
        if velocities and not ts.has_velocities:
            raise MappingError(f"{source}: frame {ts.frame}: no velocities in the trajectory")
        if ts.dimensions is None:
            raise MappingError(f"{source}: frame {ts.frame}: no periodic box")
        box = _box_matrix(ts.dimensions) * f["length"]
        pos = ts.positions if f["length"] == 1.0 else ts.positions * f["length"]
        frc = ts.forces if f["force"] == 1.0 else ts.forces * f["force"]
        vel = None
        if ts.has_velocities and velocities is not False:
            vel = ts.velocities if f["velocity"] == 1.0 else ts.velocities * f["velocity"]
        centres, bead_forces, bead_vel = cgmap.apply(pos, frc, box, vel)
        # A NaN/inf atom force makes its bead force non-finite (every atom is in a bead), so
        # checking the small bead array is enough; the atom scan runs only on failure.
        if not np.isfinite(bead_forces).all():
            bad = np.flatnonzero(~np.isfinite(ts.forces).all(axis=1))
            ids = u.atoms.ids[bad[:_MAX_LISTED]] if hasattr(u.atoms, "ids") else bad[:_MAX_LISTED]
            raise MappingError(f"{source}: frame {ts.frame}: non-finite forces on {len(bad)} "
                               f"atom(s), ids {_listing([str(i) for i in ids], len(bad))}")
        if not np.isfinite(centres).all():
            raise MappingError(f"{source}: frame {ts.frame}: non-finite positions")
        if bead_vel is not None and not np.isfinite(bead_vel).all():
            raise MappingError(f"{source}: frame {ts.frame}: non-finite velocities")
        step = ts.data.get("step")
        yield CGFrame(frame=ts.frame, time=float(ts.time), positions=centres, forces=bead_forces,
                      velocities=bead_vel, box=box, step=None if step is None else int(step))


# --------------------------------------------------------------------------- to a dataset file


def _clock(universe, frame: CGFrame):
    """The frame's step (or time in fs) as the trajectory's thermo file counts it."""
    thermo = getattr(universe, "thermo", None)
    if thermo is None:
        return None
    if thermo.by == "step":
        return frame.step
    factor = getattr(universe, "time_factor", None)
    return None if factor is None else frame.time * factor


def _frame_thermo(universe, clocks: list, frames: list[int], volumes: np.ndarray):
    """(per-frame arrays, metadata) of the mapped frames' thermodynamics, checked against the
    frames' own box volumes where the two files meet; (None, reason) when there are none."""
    from .frame_thermo import KEYS

    thermo = getattr(universe, "thermo", None)
    if thermo is None:
        return None, {"available": False, "reason": "the trajectory came with no thermo file "
                      "(LAMMPS log, GROMACS .edr or hipcg nvt_samples.dat): pressure and energy "
                      "matching are off for this dataset"}
    arrays = thermo.rows(clocks, frames)
    if "volume" in arrays:
        rel = np.abs(arrays["volume"] - volumes) / volumes
        if rel.max() > 1e-5:
            k = int(np.argmax(rel))
            raise MappingError(f"{thermo.source}: volume {arrays['volume'][k]:.6g} Å^3 at frame "
                               f"{frames[k]} differs from the trajectory's box ({volumes[k]:.6g} "
                               "Å^3): the thermo file belongs to another run")
    return arrays, {"available": True, "source": str(thermo.source), "keys": sorted(arrays),
                    "units": {k: KEYS[k] for k in arrays}}


def write_dataset(universe, mapping: Mapping | CGMap, out, start: int | None = None,
                  stop: int | None = None, step: int | None = None, velocities: bool | None = None,
                  metadata: dict | None = None, overwrite: bool = False, progress: bool = False,
                  dtype=np.float64, source: str | None = None) -> dict:
    """Map ``universe.trajectory[start:stop:step]`` frame by frame into the dataset file ``out``.

    Memory stays bounded by one frame: frames stream through :class:`hipcg.data.DatasetWriter`.
    The metadata gets the mapping hash, frame selection and mean density; ``metadata`` adds
    to it (e.g. ``{"state_point": {"temperature": 300.0, "pressure": 1.0}}``).
    Returns a summary: frames, beads, mean_abs_force, density, seconds, path.
    """
    import time

    from tqdm import tqdm

    from .data import DatasetWriter

    t0 = time.perf_counter()
    u, _ = _universe_and_factors(universe)
    cgmap = mapping if isinstance(mapping, CGMap) else CGMap.build(u, mapping)
    traj = u.trajectory
    frames = range(*slice(start, stop, step).indices(len(traj)))
    if len(frames) == 0:
        raise MappingError(f"{source or traj.filename}: no frames selected "
                           f"(start={start}, stop={stop}, step={step}, {len(traj)} frames)")
    if velocities is None:
        velocities = bool(traj.ts.has_velocities)
    meta = dict(metadata or {})
    state = dict(meta.pop("state_point", {}) or {})
    meta.update({
        "mapping": {"path": cgmap.mapping.source, "hash": cgmap.mapping.hash(),
                    "spec": cgmap.mapping.to_dict()},
        "source": {"trajectory": source or str(getattr(traj, "filename", None)),
                   "start": frames.start, "stop": frames.stop, "stride": frames.step,
                   "n_frames_source": len(traj)},
        "state_point_units": {"temperature": "K", "pressure": "atm", "density": "g/cm^3"},
    })
    writer = DatasetWriter(out, cgmap.bead_types, cgmap.type_names, cgmap.masses,
                           molecule_ids=cgmap.molecule_ids, velocities=velocities,
                           metadata=meta, overwrite=overwrite, dtype=dtype)
    total_mass = cgmap.masses.sum()
    force_sum = volume_sum = 0.0
    n = 0
    clocks, indices, volumes = [], [], []  # to match each frame with its thermodynamics
    with writer:
        stream = map_trajectory(universe, cgmap, frames.start, frames.stop, frames.step,
                                velocities=velocities, source=source)
        for fr in tqdm(stream, total=len(frames), disable=not progress, unit="frame",
                       desc="mapping", leave=False):
            writer.append(fr.positions, fr.forces, fr.box, fr.velocities)
            force_sum += np.sqrt(np.einsum("ij,ij->i", fr.forces, fr.forces)).mean()
            volumes.append(abs(np.linalg.det(fr.box)))
            volume_sum += volumes[-1]
            clocks.append(_clock(universe, fr))
            indices.append(fr.frame)
            n += 1
        writer.set_thermo(*_frame_thermo(universe, clocks, indices, np.asarray(volumes)))
        # g/mol per Å^3 -> g/cm^3: 1e24 / N_A
        density = total_mass / (volume_sum / n) * 1e24 / 6.02214076e23
        state.setdefault("density", float(density))
        writer.metadata["state_point"] = {"temperature": None, "pressure": None, **state}
    return {"frames": n, "beads": cgmap.n_beads, "mean_abs_force": force_sum / n,
            "density": density, "seconds": time.perf_counter() - t0, "path": writer.path,
            "thermo": writer.metadata["thermo"]}
