"""Task families and episode samplers."""

from metax.data.distort import random_affine as random_affine
from metax.data.episodes import EpisodeSpec as EpisodeSpec
from metax.data.episodes import check_episode_spec as check_episode_spec
from metax.data.episodes import sample_episode as sample_episode
from metax.data.episodes import sample_episodes as sample_episodes
from metax.data.omniglot import Omniglot as Omniglot
from metax.data.omniglot import load_npz as load_npz
from metax.data.omniglot import load_tfds as load_tfds
from metax.data.omniglot import read_npz as read_npz
from metax.data.png import load_png_folders as load_png_folders
from metax.data.sinusoid import SinusoidTasks as SinusoidTasks
from metax.data.sinusoid import sample_sinusoid_tasks as sample_sinusoid_tasks
from metax.data.sources import load_omniglot as load_omniglot
from metax.data.splits import Split as Split
from metax.data.splits import alphabet_split as alphabet_split
from metax.data.splits import make_split as make_split
from metax.data.splits import maml_split as maml_split

__all__ = [
    "EpisodeSpec",
    "Omniglot",
    "SinusoidTasks",
    "Split",
    "alphabet_split",
    "check_episode_spec",
    "load_npz",
    "load_omniglot",
    "load_png_folders",
    "load_tfds",
    "make_split",
    "maml_split",
    "random_affine",
    "read_npz",
    "sample_episode",
    "sample_episodes",
    "sample_sinusoid_tasks",
]
