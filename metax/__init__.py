"""metax: functional meta-learning in JAX.

Pure-function inner loops (``jax.lax.scan``), exact or first-order
meta-gradients, MAML / FOMAML / MAML++ / Reptile / Meta-SGD / ANIL / BOIL / CAVIA /
iMAML / Alpha-MAML as NamedTuples of pure functions, and a meta-step the caller jits once.
"""

from metax._src.adapt import adapt as adapt
from metax._src.base import AdaptInfo as AdaptInfo
from metax._src.base import Batch as Batch
from metax._src.base import LossFn as LossFn
from metax._src.base import MetaLearner as MetaLearner
from metax._src.base import MetaParams as MetaParams
from metax._src.base import Params as Params
from metax._src.base import Task as Task
from metax._src.base import TaskAux as TaskAux
from metax._src.baselines import pretrain as pretrain
from metax._src.fast_slow import anil as anil
from metax._src.fast_slow import boil as boil
from metax._src.fast_slow import cavia as cavia
from metax._src.hypergradient import HypergradientState as HypergradientState
from metax._src.hypergradient import hypergradient as hypergradient
from metax._src.hypergradient import hypergradient_adam as hypergradient_adam
from metax._src.hypergradient import hypergradient_sgd as hypergradient_sgd
from metax._src.imaml import ImplicitInfo as ImplicitInfo
from metax._src.imaml import imaml as imaml
from metax._src.maml import maml as maml
from metax._src.maml import maml_pp as maml_pp
from metax._src.meta_sgd import alpha_maml as alpha_maml
from metax._src.meta_sgd import meta_sgd as meta_sgd
from metax._src.meta_step import StepInfo as StepInfo
from metax._src.meta_step import meta_step as meta_step
from metax._src.reptile import reptile as reptile
from metax._src.schedules import DerivativeOrderAnnealing as DerivativeOrderAnnealing
from metax._src.schedules import derivative_order_annealing as derivative_order_annealing
from metax._src.schedules import msl_weights as msl_weights
from metax._src.transforms import per_parameter_rates as per_parameter_rates
from metax._src.transforms import per_step_rates as per_step_rates
from metax._src.transforms import per_step_slice as per_step_slice
from metax._src.transforms import scale_by_learned_lr as scale_by_learned_lr

__version__ = "0.2.0"

__all__ = [
    "AdaptInfo",
    "Batch",
    "DerivativeOrderAnnealing",
    "HypergradientState",
    "ImplicitInfo",
    "LossFn",
    "MetaLearner",
    "MetaParams",
    "Params",
    "StepInfo",
    "Task",
    "TaskAux",
    "adapt",
    "alpha_maml",
    "anil",
    "boil",
    "cavia",
    "derivative_order_annealing",
    "hypergradient",
    "hypergradient_adam",
    "hypergradient_sgd",
    "imaml",
    "maml",
    "maml_pp",
    "meta_sgd",
    "meta_step",
    "msl_weights",
    "per_parameter_rates",
    "per_step_rates",
    "per_step_slice",
    "pretrain",
    "reptile",
    "scale_by_learned_lr",
]
