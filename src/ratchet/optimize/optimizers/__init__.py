"""DSPy optimizers behind one small interface: one file per optimizer (``base.py`` holds the interface)."""

from ratchet.errors import ConfigError
from ratchet.optimize.optimizers.auto import AutoOptimizer
from ratchet.optimize.optimizers.base import OptimizeContext, Optimizer
from ratchet.optimize.optimizers.bootstrap import BootstrapOptimizer
from ratchet.optimize.optimizers.bootstrap_rs import BootstrapRSOptimizer
from ratchet.optimize.optimizers.gepa import GepaOptimizer
from ratchet.optimize.optimizers.labeled import LabeledOptimizer
from ratchet.optimize.optimizers.mipro import MiproOptimizer
from ratchet.optimize.optimizers.simba import SimbaOptimizer

OPTIMIZERS: dict[str, type] = {
    cls.name: cls
    for cls in (AutoOptimizer, MiproOptimizer, BootstrapOptimizer, BootstrapRSOptimizer, LabeledOptimizer,
                GepaOptimizer, SimbaOptimizer)
}


def get_optimizer(name: str) -> Optimizer:
    """An optimizer by its CLI name (auto, mipro, bootstrap, bootstrap-rs, labeled, gepa, simba)."""
    try:
        return OPTIMIZERS[name]()
    except KeyError:
        raise ConfigError(f"unknown optimizer '{name}' (choose from {', '.join(OPTIMIZERS)})") from None


__all__ = ["OPTIMIZERS", "OptimizeContext", "Optimizer", "get_optimizer"]
