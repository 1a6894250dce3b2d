"""pixeldrl — PixelDRL-MG: pixel-level deep reinforcement learning for medical image segmentation.

Every pixel of a 2-D image is an agent; a shared fully convolutional network looks at the
progressively masked image and, for ``t_max`` steps, each pixel chooses "set to zero" or "do
nothing"; training is pixel-level advantage actor-critic (PA3C). The package follows the data::

    data/          files -> network-size slices
                   images (PNG/TIFF), volumes (NIfTI), layouts (MSD, nnU-Net, LGG, paired folders),
                   transforms (intensities, network size, flips), folder (the 2-D folder format),
                   splits (70/10/20, k-shot), protocol (volumes -> slices), store (``pixeldrl prepare``),
                   dataset (``load_dataset``: any layout -> train/val/test), demo (MNI152 slices)
    nets/          networks: pixeldrl_mg (PixelDRL-MG), kernels (CPU workarounds),
                   baselines (MONAI U-Nets, PixelRL's network)
    config.py      TrainConfig, presets, validation; the one list of models
    rl/            the paper's equations: env (state, actions, Eq. 12 reward),
                   pa3c (agent, rollout, Eq. 8 returns, losses, the greedy episode ``segment``)
    models.py      every model by name (PA3C agents and U-Nets)
    checkpoint.py  save / load (``weights_only``) / rebuild a model from a checkpoint
    predict.py     checkpoint + images or volumes -> masks, keep-probabilities, step maps
    export.py      checkpoint -> TorchScript / ONNX one-step network
    evaluate.py    masks or a checkpoint against ground truth -> tables
    viewer.py      predictions -> one self-contained HTML page (``pixeldrl view``)
    training/      update (one PA3C update, an epoch), run (run folder, log, schedule,
                   validation, the end-of-run test evaluation), parallel (asynchronous workers,
                   torchrun), supervised (U-Nets), train (``train``: the whole run)
    experiments/   reproduce (the paper's tables), corruptions (robustness), demo
    api.py         the Python API: ``load`` a checkpoint as a ``Model`` (segment arrays and volumes),
                   ``train`` in one call
    cli.py         the ``pixeldrl`` command (``python -m pixeldrl`` too)
    leaves         metrics.py (DICE, PPV, SEN, IoU, Boundary IoU, HD95), report.py (figures),
                   errors.py (the error type for bad input, checks of files read back),
                   fileio.py (atomic writes, folder locks), progress.py (progress bars)

Each module imports only modules listed above it and the leaves, which import only each other.
The public API below is what the command runs; ``pixeldrl --help`` lists the commands.
"""

__version__ = "0.1.0"

from pixeldrl.api import Model, Segmented, TrainedRun, load, train
from pixeldrl.checkpoint import agent_from_checkpoint
from pixeldrl.config import TrainConfig, make_config
from pixeldrl.data.dataset import load_dataset
from pixeldrl.evaluate import evaluate_checkpoint, evaluate_folders
from pixeldrl.metrics import compute_metrics
from pixeldrl.predict import predict_files, predict_volumes
from pixeldrl.rl.pa3c import segment

__all__ = [
    "__version__",
    "TrainConfig",
    "make_config",
    "load_dataset",
    "load",
    "Model",
    "Segmented",
    "train",
    "TrainedRun",
    "agent_from_checkpoint",
    "segment",
    "predict_files",
    "predict_volumes",
    "evaluate_checkpoint",
    "evaluate_folders",
    "compute_metrics",
]
