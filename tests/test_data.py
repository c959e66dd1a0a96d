import shutil
from collections import Counter

import pytest
import torch

from catdog_pl.data import CatDogDataModule, DataLayoutError, stratified_split


def test_classes_and_splits(tiny_data):
    dm = CatDogDataModule(data_dir=str(tiny_data), batch_size=4, num_workers=0)
    dm.setup("fit")
    assert dm.class_names == ["cats", "dogs"]
    assert len(dm.train_set) == 32 and len(dm.val_set) == 16  # validates on test_set, as the original
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert set(labels.tolist()) <= {0, 1}
    dm.setup("test")
    assert len(dm.test_set) == 16


def test_val_split_is_stratified_and_seeded(tiny_data):
    dm = CatDogDataModule(data_dir=str(tiny_data), num_workers=0, val_split=0.25)
    dm.setup("fit")
    assert len(dm.train_set) == 24 and len(dm.val_set) == 8
    targets = dm.train_set.dataset.targets
    assert Counter(targets[i] for i in dm.val_set.indices) == {0: 4, 1: 4}
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    assert stratified_split(targets, 0.25, seed=1) == stratified_split(targets, 0.25, seed=1)
    assert stratified_split(targets, 0.25, seed=1) != stratified_split(targets, 0.25, seed=2)


@pytest.mark.parametrize("val_split", [-0.1, 1.0])
def test_val_split_out_of_range(val_split):
    with pytest.raises(DataLayoutError, match=r"val_split must be in \[0, 1\)"):
        CatDogDataModule(val_split=val_split)


def _break_missing_data_dir(root):
    shutil.rmtree(root)
    return root


def _break_missing_test_set(root):
    shutil.rmtree(root / "test_set")
    return root / "test_set"


def _break_one_class(root):
    shutil.rmtree(root / "training_set" / "dogs")
    return root / "training_set"


def _break_three_classes(root):
    (root / "training_set" / "birds").mkdir()
    return root / "training_set"


@pytest.mark.parametrize(
    "breaker", [_break_missing_data_dir, _break_missing_test_set, _break_one_class, _break_three_classes]
)
def test_wrong_layout_is_one_line_naming_the_path(tiny_data, breaker):
    culprit = breaker(tiny_data)
    dm = CatDogDataModule(data_dir=str(tiny_data), num_workers=0)
    with pytest.raises(DataLayoutError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(culprit))
