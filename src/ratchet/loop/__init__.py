"""The loop: the cycle (collect → … → deploy), its triggers and the controller that supervises rollouts.

It sits above the packages it drives (data, optimize, rollout, monitor): they never import it.
"""

from ratchet.loop.cycle import PHASES, CycleOptions, run_cycle

__all__ = ["PHASES", "CycleOptions", "run_cycle"]
