"""Save/load of our trainable modules in the Hugging Face layout (``config.json`` + ``model.safetensors``).

One place for what loading every module needs on top of huggingface_hub's ``PyTorchModelHubMixin``:
weights load strictly (a missing or renamed tensor is an error, never a silent random init), and a
local folder loads without the library's own ``print`` ("Loading weights from local directory"), which
would otherwise land in the CLI's standard output.
"""

from __future__ import annotations

import os

from pathlib import Path

from huggingface_hub import PyTorchModelHubMixin, constants

from ..errors import InputError


class ModuleHubMixin(PyTorchModelHubMixin):
    """``save_pretrained`` / ``from_pretrained`` for a foleykit module (``class X(nn.Module, ModuleHubMixin)``)."""

    @classmethod
    def from_folder(cls, ref: str | os.PathLike, *, what: str):
        """A user-given module folder, or one clear line naming it (``what``: "mapper", "grounding", …)."""
        path = Path(ref).expanduser()
        if not (path / "config.json").is_file() or not (path / constants.SAFETENSORS_SINGLE_FILE).is_file():
            raise InputError(f"{what} {ref}: expected a folder with config.json + model.safetensors")
        try:
            return cls.from_pretrained(str(path))
        except InputError:
            raise
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{what} {ref} could not be loaded: {first}") from None

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs):
        if os.path.isdir(model_id):  # the library's branch for a local folder, without its print
            model = cls(**model_kwargs)
            weights = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            return cls._load_as_safetensor(model, weights, map_location, strict)
        return super()._from_pretrained(model_id=model_id, revision=revision, cache_dir=cache_dir,
                                        force_download=force_download, local_files_only=local_files_only,
                                        token=token, map_location=map_location, strict=strict, **model_kwargs)
