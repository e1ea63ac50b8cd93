"""nnUNetTrainerDBCE in-process on the preprocessed tiny dataset: batches, weights, losses, refusals."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from helpers import make_trainer
from nnunetv2_dbce import DBCELoss, dbce_weight_map
from nnunetv2_dbce.trainers import nnUNetTrainerBalancedCE, nnUNetTrainerDBCE
from nnunetv2_dbce.voxel_maps.loader import raise_if_failed
from reference import reference_weighted_ce


def test_batches_carry_weights_of_the_augmented_targets(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerDBCE, *plans_and_dataset_json)
    trainer.initialize()
    loader_train, loader_val = trainer.get_dataloaders()
    spacing = trainer.configuration_manager.spacing
    for loader in (loader_train, loader_val):
        batch = next(loader)
        targets, weights = batch["target"], batch["voxel_map"]
        assert isinstance(weights, list) and len(weights) == len(targets) > 1
        for scale_target, scale_weights in zip(targets, weights):
            assert scale_weights.shape == scale_target.shape and scale_weights.dtype == torch.float32
        for b in range(targets[0].shape[0]):
            full = dbce_weight_map(targets[0][b, 0].numpy(), trainer.dilation_radius, spacing)
            np.testing.assert_array_equal(weights[0][b, 0].numpy(), full)
            for scale_target, scale_weights in zip(targets[1:], weights[1:]):
                # every lower-scale voxel carries the weight of a full-resolution voxel of the same label
                for label in np.unique(scale_target[b, 0].numpy()):
                    at_scale = np.unique(scale_weights[b, 0].numpy()[scale_target[b, 0].numpy() == label])
                    assert set(at_scale) <= set(np.unique(full[targets[0][b, 0].numpy() == label]))


def test_validation_loss_is_deep_supervised_dbce(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerDBCE, *plans_and_dataset_json)
    trainer.initialize()
    assert isinstance(trainer.loss, DeepSupervisionWrapper) and isinstance(trainer.loss.loss, DBCELoss)
    _, loader_val = trainer.get_dataloaders()
    batch = next(loader_val)
    trainer.on_validation_epoch_start()
    logged = trainer.validation_step(batch)["loss"]
    assert isinstance(trainer.loss, DeepSupervisionWrapper), "the loss must be restored after the step"

    with torch.no_grad():
        outputs = trainer.network(batch["data"])
    scales = zip(trainer.loss.weight_factors, outputs, batch["target"], batch["voxel_map"])
    expected = sum(factor * reference_weighted_ce(out.numpy(), t[:, 0].numpy(), w[:, 0].numpy())
                   for factor, out, t, w in scales if factor != 0)
    assert float(logged) == pytest.approx(expected, rel=1e-4)


def test_train_step_on_background_only_and_absent_class_batches(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerBalancedCE, *plans_and_dataset_json)
    trainer.initialize()
    loader_train, _ = trainer.get_dataloaders()
    batch = next(loader_train)
    trainer.on_train_epoch_start()
    background_only = {"data": batch["data"], "target": [torch.zeros_like(t) for t in batch["target"]],
                       "voxel_map": [torch.ones_like(w) for w in batch["voxel_map"]]}
    assert np.isfinite(trainer.train_step(background_only)["loss"])
    one_class = [torch.where(t == 2, 0, t) for t in batch["target"]]
    one_class_batch = {"data": batch["data"], "target": one_class,
                       "voxel_map": [torch.stack([torch.from_numpy(dbce_weight_map(s[0].numpy(), 0))[None]
                                                for s in t]) for t in one_class]}
    assert np.isfinite(trainer.train_step(one_class_batch)["loss"])
    assert all(torch.isfinite(p).all() for p in trainer.network.parameters())


def test_batch_without_voxel_maps_is_refused(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerDBCE, *plans_and_dataset_json)
    trainer.initialize()
    with pytest.raises(KeyError, match="voxel_map"):
        trainer.train_step({"data": torch.zeros(1), "target": [torch.zeros(1)]})


def test_ignore_label_reaches_loss_and_transform(plans_and_dataset_json):
    plans, dataset_json = plans_and_dataset_json
    dataset_json = dict(dataset_json, labels={**dataset_json["labels"], "ignore": 3})
    trainer = make_trainer(nnUNetTrainerDBCE, plans, dataset_json)
    trainer.initialize()
    assert trainer.loss.loss.ignore_index == 3
    assert trainer._voxel_map_transform().map_function.function.ignore_label == 3


@pytest.mark.parametrize("radius, error", [(-2, ValueError), ("big", TypeError), (float("nan"), ValueError)])
def test_bad_radius_is_refused_before_training(plans_and_dataset_json, radius, error):
    bad = type("nnUNetTrainerDBCE_bad", (nnUNetTrainerDBCE,), {"dilation_radius": radius})
    with pytest.raises(error, match="radius"):
        make_trainer(bad, *plans_and_dataset_json)


def test_a_failing_sample_in_a_worker_is_raised_in_the_main_process_with_its_case(plans_and_dataset_json,
                                                                                     monkeypatch):
    import nnunetv2_dbce.voxel_maps.dbce as weight_map_module

    def broken(label_map, *args):
        raise ValueError("weight map exploded")

    monkeypatch.setattr(weight_map_module, "dbce_weight_map", broken)  # workers are forked: they see it
    monkeypatch.setenv("nnUNet_n_proc_DA", "1")
    trainer = make_trainer(nnUNetTrainerDBCE, *plans_and_dataset_json)
    trainer.initialize()
    loader_train, loader_val = trainer.get_dataloaders()
    try:
        with pytest.raises(RuntimeError, match=r"(?s)case 'demo_\d+'.*ValueError: weight map exploded"):
            trainer.train_step(next(loader_train))
        with pytest.raises(RuntimeError, match="case 'demo_"):
            trainer.validation_step(next(loader_val))
    finally:
        loader_train._finish()
        loader_val._finish()


def test_trainer_checks_labels_against_the_dataset(plans_and_dataset_json):
    """The trainer's map transform refuses a label beyond the dataset's, its ignore label included."""
    plans, dataset_json = plans_and_dataset_json
    segmentation = torch.zeros((1, 16, 16), dtype=torch.int16)
    segmentation[0, 2:5, 2:5] = 3
    transform = make_trainer(nnUNetTrainerDBCE, plans, dataset_json)._voxel_map_transform()
    with pytest.raises(ValueError, match="holds label 3, but the dataset's labels go up to 2"):
        transform(segmentation=segmentation)
    with_ignore = dict(dataset_json, labels={**dataset_json["labels"], "ignore": 3})
    assert "voxel_map" in make_trainer(nnUNetTrainerDBCE, plans, with_ignore)._voxel_map_transform()(
        segmentation=segmentation)


SPAWNED_WORKER_FAILURE = '''
import json, multiprocessing, sys
import torch
from nnunetv2_dbce.trainers import nnUNetTrainerDBCE

if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)
    plans, dataset_json = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
    plans["continue_training"] = False
    dataset_json["labels"] = {"background": 0, "spot": 1}  # the data also hold label 2 ('blob')
    trainer = nnUNetTrainerDBCE(plans, "2d", 0, dataset_json, torch.device("cpu"))
    trainer.initialize()
    loader_train, _ = trainer.get_dataloaders()
    assert multiprocessing.get_start_method() == "spawn" and loader_train.num_processes == 1
    try:
        trainer.train_step(next(loader_train))
    except RuntimeError as error:
        print("RAISED", error)
    finally:
        loader_train._finish()
'''


def test_a_failing_sample_in_a_spawned_worker_is_raised_with_its_case(plans_and_dataset_json, tmp_path):
    """Same with the 'spawn' start method (macOS, Windows): nothing patched in the main process reaches the
    workers, so the failure is a real one, a label the dataset.json does not declare."""
    plans, dataset_json = plans_and_dataset_json
    for name, content in (("plans.json", plans), ("dataset.json", dataset_json)):
        (tmp_path / name).write_text(json.dumps(content))
    (tmp_path / "spawned.py").write_text(SPAWNED_WORKER_FAILURE)
    env = dict(os.environ, nnUNet_n_proc_DA="1")
    result = subprocess.run([sys.executable, str(tmp_path / "spawned.py"), str(tmp_path / "plans.json"),
                             str(tmp_path / "dataset.json")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"(?s)RAISED Preparing the training sample of case 'demo_\d+' failed.*label", result.stdout)


UNCAUGHT_WORKER_FAILURE = '''
import json, sys
import torch
from nnunetv2_dbce.trainers import nnUNetTrainerDBCE

plans, dataset_json = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
plans["continue_training"] = False
dataset_json["labels"] = {"background": 0, "spot": 1}  # the data also hold label 2 ('blob')
trainer = nnUNetTrainerDBCE(plans, "2d", 0, dataset_json, torch.device("cpu"))
trainer.num_epochs = 1
trainer.run_training()
'''


def test_the_cause_is_the_last_thing_printed(plans_and_dataset_json, tmp_path):
    """A failing sample stops nnU-Net's own training loop with the cause last on the screen: the augmentation
    workers are stopped first, so their threads do not report 'background workers are no longer alive' after it."""
    plans, dataset_json = plans_and_dataset_json
    for name, content in (("plans.json", plans), ("dataset.json", dataset_json)):
        (tmp_path / name).write_text(json.dumps(content))
    (tmp_path / "uncaught.py").write_text(UNCAUGHT_WORKER_FAILURE)
    result = subprocess.run([sys.executable, str(tmp_path / "uncaught.py"), str(tmp_path / "plans.json"),
                             str(tmp_path / "dataset.json")], env=dict(os.environ, nnUNet_n_proc_DA="2"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == "ValueError: the segmentation holds label 2, but the dataset's labels go up to 1", \
        result.stderr[-2000:]
    assert "no longer alive" not in result.stderr


def single_process_loaders(trainer):
    trainer.initialize()
    loader_train, _ = trainer.get_dataloaders()
    return loader_train.data_loader  # nnUNet_n_proc_DA=0: batches are made in this process


@pytest.mark.parametrize("failing_call", [1, 2])
def test_a_case_that_fails_to_load_is_the_one_named(plans_and_dataset_json, monkeypatch, failing_call):
    """Loading fails for the first or the second sample of a batch: the message names that case (the one nnU-Net
    was loading) and the worker's exception is chained."""
    loader = single_process_loaders(make_trainer(nnUNetTrainerDBCE, *plans_and_dataset_json))
    original, calls = loader._data.load_case, []

    def load_case(identifier):
        calls.append(identifier)
        if len(calls) == failing_call:
            raise OSError(f"cannot read {identifier}")
        return original(identifier)

    monkeypatch.setattr(loader._data, "load_case", load_case)
    batch = loader.generate_train_batch()
    with pytest.raises(RuntimeError, match=rf"sample of case '{calls[-1]}' failed.*OSError: cannot read {calls[-1]}") \
            as raised:
        raise_if_failed(batch)
    assert isinstance(raised.value.__cause__, OSError) and calls[-1] == loader.batch_keys[failing_call - 1]


def test_a_failure_after_the_last_sample_names_the_batch_and_interrupts_pass(plans_and_dataset_json, monkeypatch):
    loader = single_process_loaders(make_trainer(nnUNetTrainerDBCE, *plans_and_dataset_json))
    import nnunetv2_dbce.voxel_maps.loader as loader_module

    def uneven(per_sample):
        raise RuntimeError("maps of different shapes")

    monkeypatch.setattr(loader_module, "stack_voxel_maps", uneven)
    with pytest.raises(RuntimeError, match=r"stacking the voxel maps of cases \['demo_"):
        raise_if_failed(loader.generate_train_batch())

    def interrupted(identifier):
        raise KeyboardInterrupt

    monkeypatch.setattr(loader._data, "load_case", interrupted)
    with pytest.raises(KeyboardInterrupt):  # never turned into a failed batch
        loader.generate_train_batch()
