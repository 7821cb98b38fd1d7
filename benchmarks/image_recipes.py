"""The Teachable Machine case, measured: the real Teachable Machine MobileNet (Keras 2.4.0) on
scikit-learn's bundled photographs, crops of them and digits as PNG (16 files), predicted by
portanet with the old default preprocessing (Pillow bilinear stretch) and with the
``teachable-machine`` recipe, each against Teachable Machine's own Keras snippet
(``ImageOps.fit(image, (224, 224), LANCZOS)``, ``x / 127.5 - 1``) run in Keras.

    PYTHONPATH=. .venv/bin/python benchmarks/image_recipes.py [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
MODEL = (
    Path(__file__).resolve().parents[1] / "../shared/data/legacy-h5/keras240_teachable_mobilenet.h5"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL.resolve())
    args = parser.parse_args()
    if not args.model.is_file():
        print(f"{args.model}: the real Teachable Machine file is not here", file=sys.stderr)
        return 2
    import numpy as np
    from PIL import Image, ImageOps

    from portanet.export import export_model
    from portanet.images import Recipe, prepare, recipe_from_preset
    from tests.images.photos import write_photo_files

    with tempfile.TemporaryDirectory() as folder:
        files = write_photo_files(Path(folder) / "photos")
        result = export_model(args.model, Path(folder) / "tm.onnx", verify=False)
        import portanet

        model = portanet.load(result.path)
        snippet = np.stack(
            [
                np.asarray(
                    ImageOps.fit(Image.open(p).convert("RGB"), (224, 224), Image.Resampling.LANCZOS)
                ).astype(np.float32)
                / 127.5
                - 1
                for p in files
            ]
        )
        expected = np.asarray(result.loaded.model(snippet, training=False))
        for label, recipe in (
            ("old default (Pillow bilinear stretch)", Recipe((224, 224), value_range=(-1.0, 1.0))),
            (
                "--image-preset teachable-machine",
                recipe_from_preset("teachable-machine", (224, 224)),
            ),
        ):
            got = model.predict(prepare(files, recipe))
            agree = int((got.argmax(axis=1) == expected.argmax(axis=1)).sum())
            print(
                f"{label}: top-1 {agree}/{len(files)} with the snippet, "
                f"max abs {np.abs(got - expected).max():.3g}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
