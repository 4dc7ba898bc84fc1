"""Task families and episode samplers."""

from metax.data.sinusoid import SinusoidTasks as SinusoidTasks
from metax.data.sinusoid import sample_sinusoid_tasks as sample_sinusoid_tasks

__all__ = ["SinusoidTasks", "sample_sinusoid_tasks"]
