"""Scale-gated adapters: the layers and their scoped switching (:mod:`.layers`) and the adapter folder on
disk (:mod:`.files`). Import them from here: ``from sace.adapters import attach_adapter, load_adapters``."""

from .files import base_model_hash, load_adapter, load_adapters, save_adapter
from .layers import (
    DEFAULT_MODULES,
    Adapter,
    AdapterConfig,
    AdapterSet,
    GatedLinear,
    adapter_names,
    adapter_set,
    attach_adapter,
    check_gate,
    check_rank,
    detach_adapters,
    only_adapters,
    set_adapters_enabled,
)

__all__ = ["DEFAULT_MODULES", "Adapter", "AdapterConfig", "AdapterSet", "GatedLinear", "adapter_names", "adapter_set",
           "attach_adapter", "base_model_hash", "check_gate", "check_rank", "detach_adapters", "load_adapter",
           "load_adapters", "only_adapters", "save_adapter", "set_adapters_enabled"]
