"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and built-in types (never pickled objects), so loading
one cannot execute code: ``{"format": 1, "model": state_dict, "optimizer": state_dict,
"config": TrainConfig dict, "net_config": NetConfig dict, "epoch": int, "best_val_dice": float,
"rng": tensor}``.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from pixeldrl.config import TrainConfig, is_device_name
from pixeldrl.errors import InputError, check_types, first_line
from pixeldrl.fileio import atomic_write
from pixeldrl.models import build_model, check_model
from pixeldrl.nets.pixeldrl_mg import NetConfig
from pixeldrl.rl.pa3c import Agent

FORMAT = 1


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a torn file.

    The checkpoint is serialised in memory first and written with a plain file write, so a full
    disk or a file-size limit surfaces as an ``OSError`` naming the file (torch's own writer reports
    it as an opaque ``RuntimeError``); the previous checkpoint stays as it was.
    """
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    with atomic_write(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely; InputError when it is missing, corrupt or not ours."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise  # permission denied and the like: the CLI reports the OS's words
    except Exception as e:  # torch raises many types for empty, truncated or unsafe files
        empty = " (an empty file)" if path.stat().st_size == 0 else ""
        raise InputError(f"{path}: not a readable pixeldrl checkpoint{empty} ({first_line(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path}: not a pixeldrl checkpoint (format {FORMAT} expected)")
    check_types(ckpt, {"model": dict, "config": dict}, str(path))
    return ckpt


def resolve_device(name: str | torch.device) -> torch.device:
    """``--device`` as a torch.device; InputError naming the option when it is unusable here.

    ``auto`` is CUDA when this machine has it, else the CPU."""
    if not is_device_name(str(name)):
        raise InputError(f"--device {name}: not a device name (use auto, cpu, cuda or cuda:N)")
    if str(name) == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {name}: not a device name (use cpu, cuda or cuda:N)") from None
    try:
        torch.empty(0, device=device)  # an unavailable backend or device index fails here, not mid-run
    except (RuntimeError, ValueError, AssertionError) as e:
        msg = " ".join(str(e).split())[:160]
        raise InputError(f"--device {name}: not available on this machine ({msg})") from None
    return device


def agent_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[Agent, TrainConfig]:
    """Rebuild the model stored in a checkpoint, in eval mode on ``device``.

    For PixelDRL-MG (and checkpoints older than the ``model`` field) the agent is rebuilt from the
    stored ``net_config``; for the baselines from the stored ``model_name`` / ``model_kwargs``
    (``models.py``): a PixelRL agent, or a ``nets.baselines.Segmenter`` that the greedy episode runs
    in one pass. Either way the result plugs into ``predict`` and ``evaluate``.
    The returned config's ``infer_steps`` is the number of greedy steps to run.
    """
    # Check the device first: otherwise torch.load's failure to map onto it reads as a corrupt file.
    device = resolve_device(device)
    ckpt = load_checkpoint(path, map_location="cpu")
    cfg = TrainConfig.from_dict(ckpt["config"], f"{path} (its config)")
    # The greedy steps this checkpoint's model was validated at (t_max for checkpoints without them).
    cfg.infer_steps = int(ckpt.get("infer_steps") or cfg.infer_steps or cfg.t_max)
    name = ckpt.get("model_name", cfg.model)
    if name == "pixeldrl":
        net = NetConfig.from_dict(ckpt.get("net_config"), f"{path} (its net_config)")
        agent = Agent(net, cfg.kernel_size, kernel_mode=cfg.kernel)
    else:
        if not isinstance(name, str):
            raise InputError(f"{path}: entry 'model_name' should be str, found {name!r:.60}")
        check_model(name)
        kwargs = ckpt.get("model_kwargs", {"in_channels": cfg.in_channels})
        check_types(kwargs, {"in_channels": int}, f"{path} (its model_kwargs)")
        agent = build_model(name, in_channels=kwargs["in_channels"], cfg=cfg)
    try:
        agent.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, TypeError) as e:
        raise InputError(f"{path}: weights do not fit the stored architecture ({first_line(e)})") from None
    # channels-last on CPU: the same numbers, faster convolutions (float32; bf16 only where asked in training)
    agent = agent.to(device)
    if isinstance(agent, Agent):
        agent.set_fast_paths(channels_last=None)  # by device
    return agent.eval(), cfg
