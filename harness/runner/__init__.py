"""Planning and executing work units, and the score/report stages that read the store."""

from harness.runner.plan import derive_seed, make_run_id, plan_units

__all__ = ["derive_seed", "make_run_id", "plan_units"]
