"""The plan: what a network computes per pair of images and per image, and on which displacement
planes. `lower.lower(network)` walks back from the readout to the planes each layer must produce
(`Band`s per axis), groups layers that keep planes independent into `Stage`s, and returns a
`Plan` with the pair program and the image program (variance maps); `describe` prints it.
Backends execute plans; nothing here knows a backend."""
from .describe import describe
from .lower import Band, Plan, Program, Stage, Step, lower

__all__ = ["Band", "Plan", "Program", "Stage", "Step", "describe", "lower"]
