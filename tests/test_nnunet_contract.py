"""What this package relies on inside nnU-Net 2.8 beyond its public constructors, and the shape of the two public
interfaces it unpacks (docs/internals.md, "Reaches into nnU-Net"). Each test fails with a message naming the
nnU-Net function that changed, so that a new nnU-Net release that breaks an assumption is found here, not by a
silently different training."""
import inspect

from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from nnunetv2.model_sharing.model_export import export_pretrained_model
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2, nnUNetDatasetNumpy
from nnunetv2.training.logging.nnunet_logger import MetaLogger
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

SEE = "see docs/internals.md, 'Reaches into nnU-Net'"


def source(function) -> str:
    return inspect.getsource(function)


def test_get_dataloaders_builds_the_loader_by_its_module_global_name():
    """voxel_maps/loader.py swaps the module global nnUNetDataLoader while get_dataloaders runs."""
    assert "nnUNetDataLoader(" in source(nnUNetTrainer.get_dataloaders), \
        f"nnUNetTrainer.get_dataloaders no longer builds nnUNetDataLoader by name; {SEE}"


def test_generate_train_batch_asks_oversampling_per_sample_before_loading_and_transforms_each_sample():
    """VoxelMapDataLoader notes the failing case from get_do_oversample(j) and sets the maps aside in transforms."""
    code = source(nnUNetDataLoader.generate_train_batch)
    order = [code.find(call) for call in ("self.get_indices()", "self.get_do_oversample(j)", "self._data.load_case(i)",
                                          "self.transforms(")]
    assert -1 not in order and order == sorted(order), \
        f"nnUNetDataLoader.generate_train_batch no longer calls get_indices, get_do_oversample(j), load_case, " \
        f"transforms in this order; {SEE}"
    assert "self.get_do_oversample =" in source(nnUNetDataLoader.__init__), \
        f"nnUNetDataLoader.__init__ no longer sets get_do_oversample as an instance attribute; {SEE}"


def test_train_and_validation_steps_call_self_loss_with_output_and_target():
    """nnUNetTrainerVoxelMap binds the batch's maps to self.loss for one step."""
    for step in (nnUNetTrainer.train_step, nnUNetTrainer.validation_step):
        assert "self.loss(output, target)" in source(step), \
            f"nnUNetTrainer.{step.__name__} no longer calls self.loss(output, target); {SEE}"


def test_augmenters_stop_with_finish():
    """nnUNetTrainerVoxelMap stops the augmentation workers as nnU-Net's on_train_end does, with _finish()."""
    for augmenter in (NonDetMultiThreadedAugmenter, MultiThreadedAugmenter):
        assert callable(getattr(augmenter, "_finish", None)), \
            f"batchgenerators' {augmenter.__name__} has no _finish; {SEE}"


def test_the_deep_supervision_wrapper_keeps_its_loss_in_loss():
    """trainers/deep_supervision.py swaps the loss inside nnU-Net's wrapper, keeping nnU-Net's scale weights."""
    inner = object()
    assert DeepSupervisionWrapper(inner, [1.0]).loss is inner, f"DeepSupervisionWrapper keeps no .loss; {SEE}"
    assert "DeepSupervisionWrapper(loss, weights)" in source(nnUNetTrainer._build_loss), \
        f"nnUNetTrainer._build_loss no longer wraps its loss in DeepSupervisionWrapper; {SEE}"


def test_build_loss_compiles_the_dice_when_do_i_compile():
    """trainers/soft_dice.py compiles the Dice terms it builds exactly when nnU-Net compiles its own."""
    code = source(nnUNetTrainer._build_loss)
    assert "self._do_i_compile()" in code and "loss.dc = torch.compile(loss.dc)" in code, \
        f"nnUNetTrainer._build_loss no longer compiles loss.dc when _do_i_compile(); {SEE}"
    assert "self.loss = self._build_loss()" in source(nnUNetTrainer.initialize), \
        f"nnUNetTrainer.initialize no longer builds self.loss with _build_loss; {SEE}"


def test_checkpoints_carry_my_init_kwargs_as_init_args():
    """trainers/settings.py records the loss settings in my_init_kwargs; tools/study_run.py reads init_args."""
    assert "'init_args': self.my_init_kwargs" in source(nnUNetTrainer.save_checkpoint).replace('"', "'"), \
        f"nnUNetTrainer.save_checkpoint no longer saves my_init_kwargs as 'init_args'; {SEE}"
    assert "self.my_init_kwargs = checkpoint['init_args']" in source(nnUNetTrainer.load_checkpoint), \
        f"nnUNetTrainer.load_checkpoint no longer restores my_init_kwargs from 'init_args'; {SEE}"


def test_load_case_returns_data_segmentation_previous_stage_and_properties():
    """The derived radius (trainers/dbce.py) and the inspector (tools/inspect.py) unpack load_case's 4-tuple."""
    for dataset_class in (nnUNetDatasetBlosc2, nnUNetDatasetNumpy):
        assert "return data, seg, seg_prev, properties" in source(dataset_class.load_case), \
            f"{dataset_class.__name__}.load_case no longer returns (data, seg, seg_prev, properties); {SEE}"


def test_export_pretrained_model_takes_the_keywords_the_export_uses():
    """tools/export.py calls export_pretrained_model by keyword."""
    used = {"dataset_name_or_id", "output_file", "configurations", "trainer", "plans_identifier", "folds", "strict",
            "save_checkpoints", "export_crossval_predictions"}
    missing = used - set(inspect.signature(export_pretrained_model).parameters)
    assert not missing, f"nnunetv2.model_sharing.model_export.export_pretrained_model lost {sorted(missing)}; {SEE}"


def test_the_logger_keeps_the_dice_per_class_history():
    """LostLabelWarning reads the per-class pseudo Dice nnU-Net logs each validation epoch."""
    assert "'dice_per_class_or_region'" in source(nnUNetTrainer.on_validation_epoch_end).replace('"', "'"), \
        f"nnUNetTrainer.on_validation_epoch_end no longer logs 'dice_per_class_or_region'; {SEE}"
    assert list(inspect.signature(MetaLogger.get_value).parameters) == ["self", "key", "step"], \
        f"nnU-Net's MetaLogger.get_value(key, step) changed; {SEE}"
