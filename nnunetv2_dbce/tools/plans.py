"""Smaller plans variants for CPU studies: batch size, patch size and network width, derived from the plans
nnU-Net made, under their own identifier, reusing the same preprocessed data.

A new patch size re-plans the network topology (number of stages, strides, kernel sizes) with nnU-Net's
own planner helper ``get_pool_and_conv_props``, exactly as ``ExperimentPlanner`` does for a patch of that
size: nnU-Net's patch padding, and never a bottleneck smaller than its minimum feature-map edge (4 voxels).
Features per stage follow nnU-Net's rule ``min(max_features, base * 2**stage)``; blocks per stage keep the
source's pattern (extended with its last value when the new network has more stages).
"""
import json
from collections.abc import Sequence
from pathlib import Path

from nnunetv2_dbce.tools.cli import UserError
from nnunetv2_dbce.tools.nnunet import check_configuration

# nnU-Net 2.8's ExperimentPlanner: UNet_featuremap_min_edge_length, UNet_max_features_2d / _3d
MIN_FEATURE_MAP_EDGE = 4
MAX_FEATURES = {2: 512, 3: 320}
ENCODER_BLOCKS_KEYS = ("n_conv_per_stage", "n_blocks_per_stage")  # plain U-Net, residual encoder U-Net


def stage_values(values: Sequence[int], num_stages: int) -> list:
    """A per-stage list cut or extended (repeating its last value) to ``num_stages`` entries."""
    values = list(values)
    return values[:num_stages] + [values[-1]] * max(0, num_stages - len(values))


def replan_topology(config: dict, patch_size: Sequence[int]) -> dict:
    """``config`` (one configuration of a plans file) with the network re-planned for ``patch_size``.

    :return: the configuration with ``patch_size`` (possibly padded by nnU-Net's planner to a multiple of
        ``2**pools`` per axis) and the architecture's stages, strides, kernel sizes, features and blocks.
    """
    from nnunetv2.experiment_planning.experiment_planners.network_topology import (
        get_pool_and_conv_props,
    )

    spacing = config["spacing"]
    if len(patch_size) != len(spacing) or any(int(p) < 1 for p in patch_size):
        raise UserError(f"--patch-size needs {len(spacing)} positive values for this configuration, got "
                        f"{list(patch_size)}")
    _, strides, kernel_sizes, padded_patch, _ = get_pool_and_conv_props(spacing, [int(p) for p in patch_size],
                                                                        MIN_FEATURE_MAP_EDGE, 999999)
    num_stages = len(strides)
    arch = config["architecture"]["arch_kwargs"]
    base = arch["features_per_stage"][0]
    arch.update(n_stages=num_stages, strides=[list(s) for s in strides], kernel_sizes=[list(k) for k in kernel_sizes],
                features_per_stage=[min(MAX_FEATURES[len(spacing)], base * 2 ** i) for i in range(num_stages)],
                n_conv_per_stage_decoder=stage_values(arch["n_conv_per_stage_decoder"], num_stages - 1))
    for key in ENCODER_BLOCKS_KEYS:
        if key in arch:
            arch[key] = stage_values(arch[key], num_stages)
    config["patch_size"] = [int(p) for p in padded_patch]
    return config


def derive_small_plans(folder: Path, source: str, configuration: str, batch_size: int | None = None,
                       patch_size: Sequence[int] | None = None, features: int | None = None) -> str:
    """Write a plans variant of ``configuration`` with a smaller batch, patch and/or network; return its identifier.

    The variant keeps the source's ``data_identifier`` (same preprocessed data); the source file is never
    edited. Identifier: the source's plus ``_bs<batch>``, ``_ps<patch>``, ``_f<features>``.

    :param features: features of the first stage (nnU-Net's ``UNet_base_num_features``, 32 by default);
        each further stage doubles them up to nnU-Net's maximum.
    """
    if batch_size is None and patch_size is None and features is None:
        return source
    plans = json.loads((folder / f"{source}.json").read_text())
    check_configuration(plans, configuration, source)
    config = plans["configurations"][configuration]
    if "inherits_from" in config:
        raise UserError(f"{configuration} inherits from another configuration: give --batch-size/--patch-size/"
                        f"--features for a configuration with its own settings")
    identifier = source
    if batch_size is not None:
        if batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {batch_size}")
        config["batch_size"] = batch_size
        identifier += f"_bs{batch_size}"
    if patch_size is not None:
        replan_topology(config, patch_size)
        if list(config["patch_size"]) != list(patch_size):
            print(f"nnU-Net's planner padded --patch-size {list(patch_size)} to {config['patch_size']} (a multiple of "
                  f"2**pools per axis)")
        identifier += "_ps" + "x".join(map(str, config["patch_size"]))
    if features is not None:
        if features < 1:
            raise UserError(f"--features must be >= 1, got {features}")
        arch = config["architecture"]["arch_kwargs"]
        arch["features_per_stage"] = [min(MAX_FEATURES[len(config["spacing"])], features * 2 ** i)
                                      for i in range(arch["n_stages"])]
        identifier += f"_f{features}"
    plans["plans_name"] = identifier
    plans["configurations"] = {configuration: config}
    path = folder / f"{identifier}.json"
    text = json.dumps(plans, indent=4)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    arch = config["architecture"]["arch_kwargs"]
    print(f"Study plans: {identifier} ({path}), derived from {source} for {configuration}: batch size "
          f"{config['batch_size']}, patch size {config['patch_size']}, {arch['n_stages']} stages with "
          f"{arch['features_per_stage']} features, data {config['data_identifier']}")
    return identifier
