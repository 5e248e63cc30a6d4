"""The command line on top of the engine: the Hydra task, sweeps, compare, reproduce, and composing
conf/ outside @hydra.main. Nothing below it imports it."""
