"""The folder layouts people have, detected from ``--data.data_dir``, each read into labelled file lists.

1. the original's ``training_set/`` + ``test_set/``;
2. ``train/`` with ``val/``, ``valid/`` or ``validation/``, and an optional ``test/`` (Ultralytics, Keras, the
   PyTorch transfer-learning tutorial);
3. a folder whose sub-folders are the classes, with no split (how most data sets arrive);
4. a CSV of labels, ``path,label`` with paths relative to the CSV's folder and an optional ``split`` column
   (fastai's ``from_csv``, Kaggle's ``labels.csv``).

Splits that the layout does not give are drawn from the training photos, stratified and seeded
(:func:`stratified_split`), so that the same files, fractions and seed give the same split in ``fit``, ``validate``,
``test`` and ``report``. Anything else is a one-line error that names the folder and the accepted layouts.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from catdog_pl.core.errors import DataLayoutError

#: The layouts, as the errors show them.
ACCEPTED = (
    "<dir>/training_set/<class>/* + <dir>/test_set/<class>/*; "
    "<dir>/train/<class>/* + <dir>/{val,valid,validation}/<class>/* (+ <dir>/test/<class>/*); "
    "<dir>/<class>/* (split by val_split, test_split); "
    "a labels CSV with columns path,label[,split]"
)
VAL_NAMES = ("val", "valid", "validation")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
#: val_split of a layout without a validation folder, when none is given (Ultralytics' and fastai's 0.2).
DEFAULT_VAL_SPLIT = 0.2

Samples = list[tuple[str, int]]


@dataclass
class Layout:
    """A data set as labelled files: ``train``, ``val`` and ``test`` lists of ``(path, class index)``.

    ``val_from``/``test_from`` say where a split came from (a folder, ``held out of train``, or another split), for
    the one line ``setup`` prints.
    """

    kind: str
    root: Path
    class_names: list[str]
    train: Samples
    val: Samples
    test: Samples
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``layout: train/ + validation/ + test/, 10 classes, 3,068 / 341 / 372 photos``."""
        counts = " / ".join(f"{len(getattr(self, split)):,}" for split in ("train", "val", "test"))
        names = " + ".join(self.sources[split] for split in ("train", "val", "test"))
        return f"layout: {names}, {len(self.class_names)} classes, {counts} photos (train / val / test)"

    @property
    def val_is_test(self) -> bool:
        """Whether validation and ``test`` use the same photos (the original's ``test_set``, or a held-out share
        with no ``test_split``): then nothing may be chosen on validation that ``test`` is meant to judge."""
        return self.sources.get("val") == self.sources.get("test")

    def held_out(self) -> list[tuple[str, str, str]]:
        """``(path, class, split)`` of every file outside ``train``, paths relative to the root below it."""
        rows = []
        for split in ("val", "test"):
            for path, target in getattr(self, split):
                rows.append((relative(path, self.root), self.class_names[target], split))
        return rows


def relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def class_folders(folder: Path) -> list[str]:
    """The class folders of a split, sorted: every visible sub-folder."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))


def list_folder(folder: Path, class_names: list[str], is_image: Callable[[str], bool]) -> Samples:
    """``(path, class index)`` of every image under ``folder/<class>/`` (searched recursively), sorted."""
    samples = []
    for index, name in enumerate(class_names):
        for directory, subdirs, files in os.walk(folder / name):
            subdirs.sort()
            paths = (os.path.join(directory, file) for file in sorted(files))
            samples += [(path, index) for path in paths if is_image(path)]
    return samples


def stratified_split(targets: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (kept, held out) keeping each class's share; the same seed gives the same split."""
    generator = torch.Generator().manual_seed(seed)
    targets_t = torch.as_tensor(targets)
    kept, held = [], []
    for label in torch.unique(targets_t).tolist():
        members = torch.nonzero(targets_t == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        # at least one photo of each class of 2 or more is held out: a small class is still validated
        n_held = max(1, round(len(members) * fraction)) if fraction > 0 and len(members) >= 2 else 0
        held += members[:n_held].tolist()
        kept += members[n_held:].tolist()
    return sorted(kept), sorted(held)


def hold_out(samples: Samples, fraction: float, seed: int) -> tuple[Samples, Samples]:
    kept, held = stratified_split([target for _, target in samples], fraction, seed)
    return [samples[i] for i in kept], [samples[i] for i in held]


def split_folders(root: Path) -> dict[str, Path] | None:
    """The split folders of ``root`` (``train`` / ``val`` / ``test``, by the layouts' names), or ``None``."""
    names = {entry.name: Path(entry.path) for entry in os.scandir(root) if entry.is_dir()}
    if "training_set" in names or "test_set" in names:
        return {"train": names.get("training_set"), "test": names.get("test_set"), "kind": "original"}
    if "train" in names:
        val = next((names[n] for n in VAL_NAMES if n in names), None)
        return {"train": names["train"], "val": val, "test": names.get("test"), "kind": "splits"}
    return None


def check_classes(layout: Layout) -> Layout:
    """One-line errors for classes that a split lacks, naming the empty class folder where there is one."""
    for split in ("train", "val", "test"):
        samples = getattr(layout, split)
        if not samples and split != "train":
            continue
        present = {target for _, target in samples}
        missing = [name for i, name in enumerate(layout.class_names) if i not in present]
        if missing:
            where = layout.sources.get(split, split)
            others = f" (nor do {', '.join(missing[1:])})" if len(missing) > 1 else ""
            if where.endswith("/") and " of " not in where:  # a folder of the layout: name the class folder
                raise DataLayoutError(f"{layout.root / where / missing[0]}: class folder holds no images{others}")
            raise DataLayoutError(f"{layout.root}: {where} has no photos of class(es) {', '.join(missing)}")
    return layout


def check_counts(root: Path, class_names: list[str], samples: Samples) -> Samples:
    """The training photos, or a one-line error naming the classes of fewer than 2 (before any are held out)."""
    targets = torch.tensor([target for _, target in samples], dtype=torch.long)
    counts = torch.bincount(targets, minlength=len(class_names))
    small = [f"{name} ({int(n)})" for name, n in zip(class_names, counts, strict=True) if 0 < n < 2]
    if small:
        raise DataLayoutError(f"{root}: classes with fewer than 2 training photos: {', '.join(small)}")
    return samples


def read_layout(
    data_dir: str | os.PathLike,
    is_image: Callable[[str], bool],
    val_split: float | None = None,
    test_split: float = 0.0,
    seed: int = 42,
) -> Layout:
    """Detect the layout of ``data_dir`` and read it into file lists (see the module docstring).

    ``val_split``: ``None`` is the layout's own validation (the original's ``test_set``, a ``val`` folder, else
    :data:`DEFAULT_VAL_SPLIT` of the training photos); a fraction holds out that share of the training photos where
    the layout has no validation folder of its own (the original's ``test_set`` is not one).
    ``test_split``: the share of the training photos held out for ``test`` where the layout has no test split.
    """
    root = Path(data_dir)
    if root.is_file() and root.suffix.lower() == ".csv":
        return check_classes(read_csv_layout(root, val_split, test_split, seed))
    if not root.is_dir():
        raise DataLayoutError(
            f"{root}: data_dir not found; accepted layouts: {ACCEPTED} "
            "(or fetch the public cats and dogs with: python -m catdog_pl prepare --out dataset)"
        )
    folders = split_folders(root)
    if folders is None:
        classes = class_folders(root)
        if len(classes) < 2:
            raise DataLayoutError(
                f"{root}: found {len(classes)} class folder(s) and no train/ or training_set/; accepted layouts: "
                f"{ACCEPTED}"
            )
        return check_classes(split_train(root, "folder", f"{root.name}/", classes, list_folder(root, classes, is_image),
                                          val_split, test_split, seed))  # fmt: skip
    if folders["train"] is None:
        raise DataLayoutError(
            f"{root / 'training_set'}: folder not found beside test_set/; accepted layouts: {ACCEPTED}"
        )
    classes = class_folders(folders["train"])
    if len(classes) < 2:
        raise DataLayoutError(f"{folders['train']}: expected at least 2 class folders, found {len(classes)}")
    for split in ("val", "test"):
        folder = folders.get(split)
        if folder is not None and class_folders(folder) != classes:
            raise DataLayoutError(
                f"{folder}: class folders {class_folders(folder)} differ from {folders['train']}'s {classes}"
            )
    train = check_counts(folders["train"], classes, list_folder(folders["train"], classes, is_image))
    sources = {"train": f"{folders['train'].name}/"}
    val = list_folder(folders["val"], classes, is_image) if folders.get("val") else []
    test = list_folder(folders["test"], classes, is_image) if folders.get("test") else []
    if val:
        sources["val"] = f"{folders['val'].name}/"
    if test:
        sources["test"] = f"{folders['test'].name}/"
    if val_split and not val:  # a share of train validates, where the layout has no validation folder of its own
        train, val = hold_out(train, val_split, seed)
        sources["val"] = f"{val_split:g} of {sources['train']}"
    elif not val and test:  # validation on test/ when it is the only other split (the original; Ultralytics)
        val, sources["val"] = test, sources["test"]
    elif not val:
        return check_classes(split_train(root, folders["kind"], sources["train"], classes, train, None, test_split,
                                         seed))  # fmt: skip
    if not test:
        if test_split:
            train, test = hold_out(train, test_split, seed + 1)
            sources["test"] = f"{test_split:g} of {sources['train']}"
        else:
            test, sources["test"] = val, sources["val"]
    kind = folders["kind"]
    return check_classes(Layout(kind, root, classes, train, val, test, sources))


def split_train(
    root: Path,
    kind: str,
    name: str,
    classes: list[str],
    samples: Samples,
    val_split: float | None,
    test_split: float,
    seed: int,
) -> Layout:
    """A layout whose photos are all training photos: ``test_split`` and then ``val_split`` held out of them.

    Without ``test_split``, ``test`` evaluates the validation photos: held out too, never trained on."""
    sources = {"train": name}
    check_counts(root, classes, samples)
    fraction = DEFAULT_VAL_SPLIT if val_split is None else val_split
    if not fraction:
        raise DataLayoutError(f"{root}: no validation photos in this layout; set data.val_split above 0 (e.g. 0.2)")
    test: Samples = []
    if test_split:
        samples, test = hold_out(samples, test_split, seed + 1)
        sources["test"] = f"{test_split:g} of {name}"
    train, val = hold_out(samples, fraction / (1 - test_split) if test_split else fraction, seed)
    sources["val"] = f"{fraction:g} of {name}"
    if not test:
        test, sources["test"] = val, sources["val"]
    return Layout(kind, root, classes, train, val, test, sources)


def read_csv_layout(path: Path, val_split: float | None, test_split: float, seed: int) -> Layout:
    """A labels CSV: ``path,label[,split]``, paths relative to the CSV's folder."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise DataLayoutError(f"{path}: expected a header with columns path,label[,split]; found {columns}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    classes = sorted({row["label"] for row in rows if row["label"]})
    if len(classes) < 2:
        raise DataLayoutError(f"{path}: expected at least 2 labels in its label column, found {classes}")
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, Samples] = {"train": [], "val": [], "test": []}
    for line, row in enumerate(rows, start=2):
        file = path.parent / row["path"]
        if not row["path"] or not row["label"]:
            raise DataLayoutError(f"{path}: line {line} lacks a path or a label")
        if not file.is_file():
            raise DataLayoutError(f"{path}: line {line}: {row['path']} not found beside the CSV")
        split = SPLIT_NAMES.get(row.get("split", "train").lower() or "train")
        if split is None:
            raise DataLayoutError(
                f"{path}: line {line}: split {row['split']!r}; expected train, val, valid, validation or test"
            )
        splits[split].append((str(file), index[row["label"]]))
    name = f"{path.name} (train)"
    if not splits["val"] and not splits["test"]:
        return split_train(path.parent, "csv", name, classes, splits["train"], val_split, test_split, seed)
    sources = {"train": name}
    if splits["val"]:
        sources["val"] = f"{path.name} (val)"
    if splits["test"]:
        sources["test"] = f"{path.name} (test)"
    if not splits["val"]:
        splits["val"], sources["val"] = splits["test"], sources["test"]
    if not splits["test"]:
        splits["test"], sources["test"] = splits["val"], sources["val"]
    return Layout("csv", path.parent, classes, splits["train"], splits["val"], splits["test"], sources)
