"""The compute backends the control plane can run on, registered in one place.

A backend is a `ComputeBackend` adapter built from `Settings`. Adding one (AKS, a Kubernetes
MPIJob, ...) is one adapter module plus one line here; `AZTRAIN_BACKEND` is validated against
this table. Entries are import paths, so choosing a backend imports only that backend's module
(the Azure ML SDK stays out of every process that does not use it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aztrain.service.ports import ComputeBackend
    from aztrain.service.settings import Settings

BACKENDS: dict[str, str] = {
    "local": "aztrain.adapters.compute.local.backend:LocalBackend",
    "azureml": "aztrain.adapters.compute.azureml:AzureMLBackend",
}


def build_backend(settings: Settings) -> ComputeBackend:
    """The backend `settings.backend` names, constructed from the settings."""
    module, _, cls = BACKENDS[settings.backend].partition(":")
    backend: ComputeBackend = getattr(importlib.import_module(module), cls)(settings)
    return backend
