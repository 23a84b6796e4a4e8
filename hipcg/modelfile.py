"""The model-file contract of ``pair_style hipcg`` (docs/model-file-contract.md).

A model file is a TorchScript module whose ``forward(species, pair_first, pair_second,
pair_vec)`` returns one energy per graph node (kcal/mol), plus a JSON metadata record stored
inside the same zip archive as the extra file ``hipcg_metadata.json``.  Forces and virials are
derivatives of the energy with respect to the pair vectors, taken by whoever runs the model
(the LAMMPS plugin, :mod:`hipcg.graph`), so models only ever compute energies.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import UNITS, __version__
from .atomic import atomic_path
from .errors import ModelFileError, OutputExistsError  # ModelFileError is re-exported here
from .volume import VolumeTerm

METADATA_FILE = "hipcg_metadata.json"
CONTRACT_VERSION = 1
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class ModelMetadata:
    """What a consumer must know to run a model; stored inside the model file."""

    type_names: list[str]
    cutoff: float  # Å; pairs at or beyond it are never passed to the model
    n_interaction_layers: int  # message-passing depth: ghost beads must reach layers x cutoff
    dtype: str = "float64"  # precision of the model's parameters and of pair_vec
    units: str = UNITS
    model: str = ""  # kind of model, e.g. "lennard-jones", "hipnn-quad"
    format_version: int = CONTRACT_VERSION
    hipcg_version: str = __version__
    info: dict[str, Any] = field(default_factory=dict)  # provenance: training, versions, prior
    # the pressure force matching cannot see (hipcg.volume.VolumeTerm.to_dict); None: no term
    volume_term: dict[str, Any] | None = None
    # a temperature-aware model (W = E - T S, hipcg.models.hipnn.HipnnEnergy): it must be given
    # the temperature it runs at (pair_style hipcg temperature T); T_ref in K scales its
    # entropy head
    temperature_aware: bool = False
    reference_temperature: float | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ModelFileError(f"dtype {self.dtype!r}: allowed values are {sorted(DTYPES)}")
        if not self.type_names or len(set(self.type_names)) != len(self.type_names):
            raise ModelFileError(f"type_names must be non-empty and unique, got {self.type_names}")
        if any(not name or any(c.isspace() for c in name) for name in self.type_names):
            raise ModelFileError(f"type names may not be empty or contain spaces: {self.type_names}")
        if not self.cutoff > 0:
            raise ModelFileError(f"cutoff must be > 0, got {self.cutoff}")
        if self.n_interaction_layers < 1:
            raise ModelFileError(f"n_interaction_layers must be >= 1, got {self.n_interaction_layers}")
        if self.temperature_aware and not (self.reference_temperature or 0) > 0:
            raise ModelFileError("a temperature-aware model needs reference_temperature > 0 K, got "
                                 f"{self.reference_temperature}")
        if self.volume_term is not None:
            self.volume_term = VolumeTerm.from_dict(self.volume_term, "metadata").to_dict()

    @property
    def volume(self) -> VolumeTerm | None:
        """The model's volume term, if it has one (applied by pair_style hipcg)."""
        return None if self.volume_term is None else VolumeTerm.from_dict(self.volume_term)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> "ModelMetadata":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelFileError(f"{source}: {METADATA_FILE} is not valid JSON: {err}") from err
        required = {"type_names", "cutoff", "n_interaction_layers", "dtype", "units", "format_version"}
        missing = sorted(required - data.keys())
        if missing:
            raise ModelFileError(f"{source}: metadata lacks keys {missing}")
        if data["format_version"] != CONTRACT_VERSION:
            raise ModelFileError(f"{source}: contract version {data['format_version']}, "
                                 f"this hipcg reads {CONTRACT_VERSION}")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def save_model(module: torch.jit.ScriptModule, path: str | os.PathLike, metadata: ModelMetadata,
               overwrite: bool = False) -> Path:
    """Write ``module`` with ``metadata`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if not isinstance(module, torch.jit.ScriptModule):
        raise TypeError("save_model needs a TorchScript module (torch.jit.script or torch.jit.trace)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files={METADATA_FILE: metadata.to_json()})
    return path


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    return load_model(path, map_location="cpu")[1]


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu",
               units: str = UNITS) -> tuple[torch.jit.ScriptModule, ModelMetadata]:
    """Load a model file; check it is a hipcg model in the expected ``units``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    extra = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except Exception as err:  # torch raises RuntimeError with a long C++ trace
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFileError(f"{path} is not a readable TorchScript model ({first})") from err
    if not extra[METADATA_FILE]:
        raise ModelFileError(f"{path} is TorchScript but not a hipcg model: no {METADATA_FILE}")
    metadata = ModelMetadata.from_json(extra[METADATA_FILE], source=str(path))
    if metadata.units != units:
        raise ModelFileError(f"{path} is in units {metadata.units!r}, expected {units!r}")
    module.eval()
    return module, metadata


def apply_temperature(module: torch.nn.Module, metadata: ModelMetadata, temperature: float | None,
                      source: str) -> None:
    """Set a temperature-aware model's T, as ``pair_style hipcg temperature T`` does: required
    for such a model, refused for any other (it would silently mean nothing)."""
    from .models.hipnn import set_temperature

    if metadata.temperature_aware:
        if temperature is None:
            raise ModelFileError(f"{source} is temperature-aware (W = E - T S): give the temperature "
                                 "it runs at (K)")
        set_temperature(module, temperature)
    elif temperature is not None:
        raise ModelFileError(f"{source} is not temperature-aware: it takes no temperature")
