"""The bundled Pima Indians Diabetes data set and a deterministic stratified split.

768 rows, 8 numeric features and the ``outcome`` label (1 = tested positive). See
``pima-indians-diabetes.csv`` beside this file; its source is the UCI repository (1990).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from portanet.errors import InputError

PIMA_FEATURES = (
    "pregnancies",
    "glucose",
    "blood_pressure",
    "skin_thickness",
    "insulin",
    "bmi",
    "diabetes_pedigree",
    "age",
)
PIMA_LABEL = "outcome"
PIMA_FILE = "pima-indians-diabetes.csv"


@dataclass(frozen=True)
class Dataset:
    """Features (float32, one named column each) and labels (float32 0/1)."""

    features: np.ndarray
    labels: np.ndarray
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Dataset:
        """The rows at ``index``."""
        return Dataset(self.features[index], self.labels[index], self.feature_names)


@dataclass(frozen=True)
class Split:
    """Train, validation and test parts of one data set."""

    train: Dataset
    validation: Dataset
    test: Dataset


def pima_csv_path() -> Path:
    """Path of the bundled Pima CSV file."""
    return Path(str(resources.files(__package__).joinpath(PIMA_FILE)))


def load_pima(path: str | Path | None = None) -> Dataset:
    """Load the Pima data: the bundled CSV, or another file with the same header."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    source = Path(path) if path else pima_csv_path()
    if not source.is_file():
        raise InputError(
            f"{source}: no such file (expected a Pima CSV with columns "
            f"{', '.join(PIMA_FEATURES)}, {PIMA_LABEL})"
        )
    wanted = (*PIMA_FEATURES, PIMA_LABEL)
    try:
        table = pacsv.read_csv(
            source,
            convert_options=pacsv.ConvertOptions(column_types={n: pa.float32() for n in wanted}),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(
            f"{source}: expected a numeric CSV with columns {', '.join(wanted)}; {exc}"
        ) from exc
    missing = [n for n in wanted if n not in table.column_names]
    if missing:
        raise InputError(
            f"{source}: expected columns {list(wanted)}, got {table.column_names}"
            f" (missing {missing})"
        )
    features = np.column_stack([table[n].to_numpy() for n in PIMA_FEATURES]).astype(np.float32)
    labels = table[PIMA_LABEL].to_numpy().astype(np.float32)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise InputError(
            f"{source}: column {PIMA_LABEL!r} should hold 0 or 1, "
            f"got {sorted(set(labels.tolist()) - {0.0, 1.0})[:5]}"
        )
    return Dataset(features, labels, PIMA_FEATURES)


def stratified_split(
    data: Dataset, *, seed: int = 7, validation: float = 0.2, test: float = 0.2
) -> Split:
    """Split deterministically from ``seed``, keeping the class balance in every part."""
    if not 0 < validation < 1 or not 0 < test < 1 or validation + test >= 1:
        raise InputError(
            f"split fractions: expected validation and test in (0, 1) with a sum "
            f"below 1, got {validation} and {test}"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for cls in np.unique(data.labels):
        index = np.flatnonzero(data.labels == cls)
        rng.shuffle(index)
        n_test = int(round(len(index) * test))
        n_val = int(round(len(index) * validation))
        parts["test"].append(index[:n_test])
        parts["validation"].append(index[n_test : n_test + n_val])
        parts["train"].append(index[n_test + n_val :])
    chosen = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    return Split(*(data.subset(chosen[k]) for k in ("train", "validation", "test")))
