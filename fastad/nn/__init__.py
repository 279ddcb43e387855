"""fastad.nn: a small PyTorch-style layer library (Module, Linear, Sequential, activations, losses, init).

Start at `module.Module`; `functional` holds the activations and losses as
compositions of op-table primitives, `init` the seeded initialisers.
docs/TRAINING.md shows a training loop.
"""
from .module import (Parameter, Module, Sequential, Linear, ReLU, Tanh, Sigmoid, GELU, CrossEntropyLoss,
                     MSELoss)
from . import functional, init

__all__ = ["Parameter", "Module", "Sequential", "Linear", "ReLU", "Tanh", "Sigmoid", "GELU",
           "CrossEntropyLoss", "MSELoss", "functional", "init"]
