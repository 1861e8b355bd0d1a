"""Save/load of our trainable modules in the Hugging Face layout (``config.json`` + ``model.safetensors``).

One place for what loading every module needs on top of huggingface_hub's ``PyTorchModelHubMixin``:
weights load strictly (a missing or renamed tensor is an error, never a silent random init), and a
local folder loads without the library's own ``print`` ("Loading weights from local directory"), which
would otherwise land in the CLI's standard output.
"""

from __future__ import annotations

import os

from huggingface_hub import PyTorchModelHubMixin, constants


class ModuleHubMixin(PyTorchModelHubMixin):
    """``save_pretrained`` / ``from_pretrained`` for a foleykit module (``class X(nn.Module, ModuleHubMixin)``)."""

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
