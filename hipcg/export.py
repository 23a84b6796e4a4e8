"""``hipcg export``: a trained run -> model file for ``pair_style hipcg`` (TorchScript).

Network and prior go into one traced module, so LAMMPS needs neither Python nor hippynn.
The metadata records what a user needs to trust the file: type names, cutoff, interaction
layers (the plugin's ghost reach), units, dtype, the state points it was trained on, the prior's
parameters, the training metrics and the hipcg / hippynn / torch versions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import __version__
from .modelfile import DTYPES, ModelFileError, ModelMetadata, save_model
from .models.hipnn import HipnnConfig, example_inputs


def trace_model(model: torch.nn.Module, cutoff: float, dtype: torch.dtype) -> torch.jit.ScriptModule:
    """Trace on a small random cluster; nothing in the model branches on sizes, so the trace
    holds for any bead and pair count (checked by the tests against the eager model)."""
    model = model.to(dtype).eval()
    inputs = example_inputs(model.n_types, cutoff, dtype)
    with torch.no_grad():
        return torch.jit.trace(model, inputs, check_trace=False)


def export_model(model: torch.nn.Module, path: str | Path, type_names: list[str], config: HipnnConfig,
                 dtype: str = "float64", info: dict | None = None, overwrite: bool = False) -> Path:
    """Trace a HIP-NN model (``CGModel``: network + prior, or a bare ``HipnnEnergy``) and write
    it with its metadata for ``pair_style hipcg``: the one export path of the package."""
    import hippynn

    if dtype not in DTYPES:
        raise ModelFileError(f"dtype {dtype!r}: allowed values are {sorted(DTYPES)}")
    if len(type_names) != model.n_types:
        raise ModelFileError(f"{len(type_names)} type names for a model with {model.n_types} types")
    prior = getattr(model, "prior", None)
    meta_info = {"hyperparameters": dict(config.__dict__),
                 "prior": prior.to_dict(type_names) if prior is not None else None,
                 "versions": {"hipcg": __version__, "hippynn": hippynn.__version__,
                              "torch": torch.__version__},
                 **(info or {})}
    volume = getattr(model, "volume", None)  # pressure matching's term: metadata, not the trace
    hipnn = getattr(model, "network", model)  # CGModel or a bare HipnnEnergy
    aware = bool(getattr(hipnn, "temperature_aware", False))
    metadata = ModelMetadata(type_names=list(type_names), cutoff=config.cutoff,
                             n_interaction_layers=config.n_interaction_layers, dtype=dtype,
                             model=f"hipnn:{config.network}" + ("+prior" if prior is not None else "")
                             + ("+volume" if volume is not None else "")
                             + ("+temperature" if aware else ""),
                             info=meta_info,
                             volume_term=volume.term().to_dict() if volume is not None else None,
                             temperature_aware=aware,
                             reference_temperature=(float(hipnn.reference_temperature) if aware
                                                    else None))
    # the volume term is metadata, not part of forward: keep its parameters out of the trace
    # (the plugin's native evaluator refuses parameters of networks it does not know)
    if volume is not None:
        model.volume = None
    try:
        traced = trace_model(model, config.cutoff, metadata.torch_dtype)
    finally:
        if volume is not None:
            model.volume = volume
    return save_model(traced, path, metadata, overwrite=overwrite)


def export_run(run_dir: str | Path, path: str | Path, dtype: str = "float64",
               overwrite: bool = False) -> Path:
    """Export the best model of a finished ``hipcg train`` run."""
    from .statepoint import upgrade_record
    from .train import load_trained

    if dtype not in DTYPES:
        raise ModelFileError(f"dtype {dtype!r}: allowed values are {sorted(DTYPES)}")
    model, record = load_trained(run_dir, DTYPES[dtype])
    points = [upgrade_record(sp) for sp in record["state_points"]]
    info = {"trained_on": [sp for sp in points if sp["role"] == "train"],
            "held_out": [sp for sp in points if sp["role"] != "train"],
            "metrics": record["metrics"], "best_epoch": record["best_epoch"],
            "volume_fit": record.get("volume_term"),
            "train_dtype": record["train_dtype"]}
    return export_model(model, path, record["type_names"], HipnnConfig(**record["model_config"]),
                        dtype=dtype, info=info, overwrite=overwrite)
