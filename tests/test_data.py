import shutil
from collections import Counter

import pytest
import torch

from catdog_pl.data.datamodule import CatDogDataModule, DataLayoutError
from catdog_pl.data.layouts import stratified_split


def first_batch(dm: CatDogDataModule, loader, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch as the model sees it: loaded, then finished as the datamodule's on-device hook does."""
    return dm.prepare_batch(next(iter(loader)), train)


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "streaming"])
def test_classes_and_splits(tiny_data, cache):
    dm = CatDogDataModule(data_dir=str(tiny_data), batch_size=4, num_workers=0, cache=cache)
    dm.setup("fit")
    assert dm.cached is cache
    assert dm.class_names == ["cats", "dogs"]
    assert len(dm.train_set) == 32 and len(dm.val_set) == 16  # validates on test_set, as the original
    for loader, train in ((dm.train_dataloader(), True), (dm.val_dataloader(), False)):
        images, labels = first_batch(dm, loader, train)
        assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1
        assert set(labels.tolist()) <= {0, 1}
    dm.setup("test")
    assert len(dm.test_set) == 16


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "streaming"])
def test_val_split_is_stratified_and_seeded(tiny_data, cache):
    dm = CatDogDataModule(data_dir=str(tiny_data), num_workers=0, val_split=0.25, cache=cache)
    dm.setup("fit")
    assert len(dm.train_set) == 24 and len(dm.val_set) == 8
    val_labels = [int(dm.val_set[i][1]) for i in range(len(dm.val_set))]
    assert Counter(val_labels) == {0: 4, 1: 4}
    if not cache:  # the folders name their files: train and val share none
        assert not {p for p, _ in dm.train_set.samples} & {p for p, _ in dm.val_set.samples}
    targets = [0] * 16 + [1] * 16
    assert stratified_split(targets, 0.25, seed=1) == stratified_split(targets, 0.25, seed=1)
    assert stratified_split(targets, 0.25, seed=1) != stratified_split(targets, 0.25, seed=2)


@pytest.mark.parametrize("val_split", [-0.1, 1.0])
def test_val_split_out_of_range(val_split):
    with pytest.raises(DataLayoutError, match=r"val_split must be in \[0, 1\)"):
        CatDogDataModule(val_split=val_split)


def _break_missing_data_dir(root):
    shutil.rmtree(root)
    return root


def _break_one_class(root):
    shutil.rmtree(root / "training_set" / "dogs")
    return root / "training_set"


def _break_three_classes(root):
    (root / "training_set" / "birds").mkdir()
    return root / "test_set"  # its classes differ from training_set's


@pytest.mark.parametrize("breaker", [_break_missing_data_dir, _break_one_class, _break_three_classes])
def test_wrong_layout_is_one_line_naming_the_path(tiny_data, breaker):
    culprit = breaker(tiny_data)
    dm = CatDogDataModule(data_dir=str(tiny_data), num_workers=0)
    with pytest.raises(DataLayoutError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(culprit))


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "streaming"])
def test_setup_draws_progress_bars_where_the_trainer_draws_its_own(tiny_data, capsys, cache):
    from lightning.pytorch import Trainer

    bar = "decoding training_set" if cache else "checking training_set"
    for trainer_bar in (None, True, False):  # None: no Trainer (a script or a notebook)
        dm = CatDogDataModule(data_dir=str(tiny_data), num_workers=0, cache=cache)
        if trainer_bar is not None:
            dm.trainer = Trainer(enable_progress_bar=trainer_bar, logger=False, enable_checkpointing=False)
        capsys.readouterr()
        dm.setup("fit")
        assert (bar in capsys.readouterr().err) is (trainer_bar is not False)


def test_training_set_alone_holds_out_a_fifth_to_validate(tiny_data):
    shutil.rmtree(tiny_data / "test_set")
    dm = CatDogDataModule(data_dir=str(tiny_data), num_workers=0)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (26, 6)  # 0.2 of each class's 16, rounded
