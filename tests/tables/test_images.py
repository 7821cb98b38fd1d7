"""Images through `portanet infer`: a CNN trained here on scikit-learn's bundled digits, exported
with a labels file, predicts PNG/JPEG/WebP files given as a folder, a glob or a list; the image
preprocessing is recorded at export (detected from the model's Rescaling) and shown by inspect."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest

import portanet
from portanet.errors import InputError
from portanet.tables.infer import infer_file
from tests.builders import export, train_digits_cnn, write_digit_files
from tests.helpers import STANDIN_TEACHABLE, run_cli

pytest.importorskip("PIL")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The trained digits CNN exported with labels, and 297 held-out digits as PNG files."""
    folder = tmp_path_factory.mktemp("digits")
    keras_file = train_digits_cnn(folder)
    (folder / "labels.txt").write_text("".join(f"{i} digit {i}\n" for i in range(10)))
    export(keras_file, folder / "digits.onnx", labels=folder / "labels.txt")
    files = write_digit_files(folder / "png")
    return folder / "digits.onnx", folder / "png", files


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_folder_of_pngs_is_classified_with_the_label_names(digits):
    onnx_file, folder, files = digits
    result = run_cli("infer", str(onnx_file), str(folder), "--top-k", "2")
    assert result.returncode == 0, result.stderr.decode()
    rows = _rows(result.stdout.decode())
    assert list(rows[0]) == ["file", "label", "probability", "label_2", "probability_2"]
    assert [r["file"] for r in rows] == sorted(p.name for p, _ in files)
    truth = {p.name: f"digit {c}" for p, c in files}
    accuracy = np.mean([r["label"] == truth[r["file"]] for r in rows])
    assert accuracy > 0.8, accuracy  # held-out digits the model never saw
    assert all(float(r["probability"]) >= float(r["probability_2"]) for r in rows)


def test_glob_file_list_and_other_formats_give_the_same_answers(digits, tmp_path):
    from PIL import Image

    onnx_file, folder, files = digits
    model = portanet.load(onnx_file)
    picked = [p for p, _ in files[:6]]
    for path in picked[:3]:  # the same pictures as lossless WebP
        Image.open(path).save(tmp_path / (path.stem + ".webp"), lossless=True)
    by_list = infer_file(model, [str(p) for p in picked], tmp_path / "list.jsonl")
    by_glob = infer_file(model, str(folder / "150[0-5]_*.png"), tmp_path / "glob.jsonl")
    webp = infer_file(model, str(tmp_path / "*.webp"), tmp_path / "webp.jsonl")
    assert by_list.rows == by_glob.rows == 6 and webp.rows == 3
    listed = [json.loads(line) for line in (tmp_path / "list.jsonl").read_text().splitlines()]
    globbed = [json.loads(line) for line in (tmp_path / "glob.jsonl").read_text().splitlines()]
    lossless = [json.loads(line) for line in (tmp_path / "webp.jsonl").read_text().splitlines()]
    assert [r["probability_digit 3"] for r in listed] == [r["probability_digit 3"] for r in globbed]
    assert [r["label"] for r in lossless] == [r["label"] for r in listed[:3]]


def test_decoded_images_match_the_training_preprocessing(digits):
    """The 64×64 PNG resized to 16×16 with bilinear filtering is the ×2 upscaled digit the
    model was trained on (within the filter's blur at block edges)."""
    from portanet.images import recipes_of
    from portanet.tables.images import decode
    from tests.builders import digits_images

    onnx_file, _, files = digits
    model = portanet.load(onnx_file)
    image = next(iter(recipes_of(model.metadata, model.schema.images).values()))
    assert image.value_range == (0.0, 255.0) and image.channels == 1
    assert image.size == (16, 16) and "Rescaling" in image.range_source
    pixels, _ = digits_images()
    path, _ = files[0]
    sample = decode(path, image)
    expected = np.kron(pixels[1500], np.ones((2, 2)))[..., None]
    assert sample.shape == (16, 16, 1)
    assert np.mean(np.abs(sample - expected)) < 20  # pixel values 0..255


def test_inspect_shows_the_recorded_preprocessing_and_labels(digits):
    onnx_file, _, _ = digits
    result = run_cli("inspect", str(onnx_file))
    text = result.stdout.decode()
    assert "16x16 grey, stretched with pillow's bilinear" in text
    assert "values 0..255 (Rescaling" in text and "--image-preset" in text
    assert "labels: digit 0, digit 1" in text


def test_a_broken_image_is_exit_2_naming_the_file(digits, tmp_path):
    onnx_file, _, files = digits
    shutil.copy(files[0][0], tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = run_cli("infer", str(onnx_file), str(tmp_path))
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "broken.png" in stderr and len(stderr.strip().splitlines()) == 1


def test_teachable_machine_shaped_model_with_labels_txt(tmp_path):
    """The Teachable Machine stand-in (nested Sequential, Keras 2.4.0 .h5) exported with TM's
    labels.txt and its [-1, 1] range; JPEG files come back with the class names."""
    from PIL import Image

    (tmp_path / "labels.txt").write_text("0 Cat\n1 Dog\n")
    result = run_cli(
        "export",
        str(STANDIN_TEACHABLE),
        "--output",
        str(tmp_path / "tm.onnx"),
        "--labels",
        str(tmp_path / "labels.txt"),
        "--image-range",
        "-1..1",
    )
    assert result.returncode == 0, result.stderr.decode()
    schema = portanet.load(tmp_path / "tm.onnx").schema
    assert schema.labels == ("Cat", "Dog") and schema.images
    image = next(iter(schema.images.values()))
    assert image.value_range == (-1.0, 1.0) and image.size == (32, 32)
    rng = np.random.default_rng(0)
    for index in range(3):
        picture = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)  # resized to 32×32
        Image.fromarray(picture).save(tmp_path / f"photo{index}.jpg", quality=95)
    out = run_cli("infer", str(tmp_path / "tm.onnx"), str(tmp_path / "photo*.jpg"))
    assert out.returncode == 0, out.stderr.decode()
    rows = _rows(out.stdout.decode())
    assert len(rows) == 3 and {r["label"] for r in rows} <= {"Cat", "Dog"}
    assert set(rows[0]) == {"file", "probability_Cat", "probability_Dog", "label"}


def test_teachable_machine_mobilenetv2_is_detected_as_minus_one_to_one():
    """keras.applications' MobileNetV2 nested the way Teachable Machine nests it: its own
    preprocessing (-1..1) is what the schema records, without being told."""
    import keras

    from portanet.export.convert.keras_to_onnx import keras_signature, trace_keras
    from portanet.export.recorded import image_specs

    base = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None, pooling="avg"
    )
    head = keras.Sequential(
        [keras.Input((base.output_shape[-1],)), keras.layers.Dense(2, activation="softmax")]
    )
    model = keras.Sequential([keras.Input((32, 32, 3)), base, head])
    specs, _ = keras_signature(model)
    trace = trace_keras(model, specs)[1]
    found = image_specs(model, trace, specs, [])
    image = found[specs[0].name]
    assert image.value_range == (-1.0, 1.0) and "MobileNetV2" in image.source


def test_a_model_without_a_recorded_range_asks_for_one(digits, tmp_path):
    """An image model whose value range is unknown is refused, not guessed; the range can be
    given at inference."""
    from portanet.images import Recipe
    from portanet.tables.images import image_input

    onnx_file, _, _ = digits
    specs = portanet.load(onnx_file).schema.inputs
    with pytest.raises(InputError, match="value range"):
        image_input(specs, {}, None, "m.onnx")
    spec, image = image_input(specs, {}, {"value_range": (0.0, 1.0)}, "m.onnx")
    assert image == Recipe(
        (16, 16),
        1,
        value_range=(0.0, 1.0),
        source="not recorded (shape of the ONNX input): Pillow bilinear stretch",
        range_source="given at inference",
    )


def test_memory_is_bounded_by_bytes_for_1024_large_images(tmp_path):
    """1,024 224×224 RGB images are 588 MiB as float32; `infer` reads them in batches of about
    16 MiB (27 images), so its peak RSS, measured from an intermediate process, is the same for
    300 and for 1,024 images, and far below the whole input."""
    import subprocess
    import sys

    import keras
    import pyarrow.parquet as pq
    from PIL import Image

    from tests.helpers import REPO

    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((224, 224, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.AveragePooling2D(16),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    onnx_file = export(model, tmp_path / "big.onnx")
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    for index in range(1024):
        Image.fromarray(np.roll(tile, index, axis=1)).save(tmp_path / f"{index:04d}.jpg")
    measure = (
        "import resource, subprocess, sys; "
        "status = subprocess.run(sys.argv[1:]).returncode; "
        "print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    peaks = {}
    for count, pattern in ((300, "0[0-2]*.jpg"), (1024, "*.jpg")):
        target = tmp_path / f"o{count}.parquet"
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                measure,
                sys.executable,
                "-m",
                "portanet",
                "infer",
                str(onnx_file),
                str(tmp_path / pattern),
                "--output",
                str(target),
            ],
            capture_output=True,
            cwd=REPO,
            timeout=300,
        )
        status, peak_kib = map(int, result.stdout.split())
        assert status == 0, result.stderr.decode()
        assert pq.read_table(target).num_rows == count
        peaks[count] = peak_kib / 1024
    whole_input_mib = 1024 * 224 * 224 * 3 * 4 / 2**20
    assert peaks[1024] < 1.15 * peaks[300], peaks
    assert peaks[1024] < 0.75 * whole_input_mib, peaks


def test_deep_pixel_formats_give_the_8_bit_answers(digits, tmp_path):
    """The issue's bug: an MNIST-like digit saved as 16-bit PNG, 16-bit TIFF or float TIFF was
    clipped (to white, or to black) and answered wrong with exit 0; scaled by bit depth now."""
    from PIL import Image

    onnx_file, _, files = digits
    model = portanet.load(onnx_file)
    paths = []
    for path, _ in files[:5]:
        grey = np.asarray(Image.open(path).convert("L"))
        for suffix, picture in (
            ("16.png", Image.fromarray(grey.astype(np.uint16) * 257)),
            ("16.tif", Image.fromarray(grey.astype(np.uint16) * 257)),
            ("f.tif", Image.fromarray(grey.astype(np.float32) / 255, "F")),
        ):
            target = tmp_path / f"{path.stem}_{suffix}"
            picture.save(target)
            paths.append(target)
    deep = model.predict_images(paths)
    eight = model.predict_images([p for p, _ in files[:5] for _ in range(3)])
    np.testing.assert_allclose(deep, eight, atol=1e-3)
    assert list(deep.argmax(axis=1)) == list(eight.argmax(axis=1))


def test_folder_skips_hidden_files_counts_others_and_sets_bad_images_aside(digits, tmp_path):
    """Issue 17 §5: hidden files (``._*``, dotfiles) are skipped silently, other non-image
    files are counted, and ``--on-error skip`` lists an undecodable image with its reason
    beside the output instead of failing the run (which ``fail`` does)."""
    onnx_file, folder, files = digits
    mixed = tmp_path / "photos"
    mixed.mkdir()
    for path, _ in files[:4]:
        shutil.copy(path, mixed / path.name)
    (mixed / "._1500_0.png").write_bytes(b"\0\x05\x16\x07 AppleDouble")  # macOS resource fork
    (mixed / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (mixed / "notes.txt").write_text("taken on a Tuesday\n")
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out.csv"
    failed = run_cli("infer", str(onnx_file), str(mixed), "--output", str(out))
    assert failed.returncode == 2, failed.stderr.decode()
    assert "broken.png" in failed.stderr.decode() and not out.exists()
    result = run_cli(
        "infer", str(onnx_file), str(mixed), "--output", str(out), "--on-error", "skip"
    )
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()
    assert "wrote 4 predictions" in stderr
    assert "skipped 1 bad rows or files" in stderr and "out.rejected.csv" in stderr
    assert "skipped 1 files that are not images" in stderr  # notes.txt; the hidden two uncounted
    rows = _rows(out.read_text())
    assert sorted(r["file"] for r in rows) == sorted(p.name for p, _ in files[:4])
    (rejected,) = _rows((tmp_path / "out.rejected.csv").read_text())
    assert rejected["file"] == str(mixed / "broken.png") and rejected["unit"] == "file"
    assert "expected an image file Pillow can read" in rejected["reason"]
