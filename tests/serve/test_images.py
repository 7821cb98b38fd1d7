"""Encoded images (JPEG/PNG as BYTES, binary tensor data) decoded by the server with the
preparation recorded at export: the answer equals decoding the same bytes locally and running
``predict``; undecodable or oversized images are 400/413 naming the image."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.serve.conftest import need_module

httpclient = need_module("tritonclient.http")
Image = need_module("PIL.Image")


@pytest.fixture(scope="module")
def recipe_model(model_dir, tmp_path_factory):
    """The 16×16 RGB `image` test model with a recorded image preparation (0..1 range)."""
    onnx = need_module("onnx")
    import portanet
    from portanet import schema as meta

    source = model_dir / "image.onnx"
    schema = portanet.load(source).schema.to_dict()
    schema["images"] = {"pixels": meta.ImageSpec((16, 16), 3, (0.0, 1.0), source="test").to_dict()}
    proto = onnx.load(source)
    proto.metadata_props.add(key=meta.SCHEMA, value=json.dumps(schema))
    target = tmp_path_factory.mktemp("recipe") / "recipe.onnx"
    onnx.save(proto, target)
    return target


def _encoded(count: int, fmt: str) -> list[bytes]:
    rng = np.random.default_rng(3)
    blobs = []
    for _ in range(count):
        pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)  # resized to 16×16
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format=fmt)
        blobs.append(out.getvalue())
    return blobs


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_encoded_images_equal_local_decode_and_predict(start_server, recipe_model, fmt):
    import portanet

    server = start_server(recipe_model)
    blobs = _encoded(3, fmt)
    client = httpclient.InferenceServerClient(server.url)
    tensor = httpclient.InferInput("pixels", [3], "BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=object), binary_data=True)
    answer = client.infer("recipe", [tensor]).as_numpy("classes")
    # What a file from before recipes records: Pillow bilinear stretch, then 0..1 — done here
    # with Pillow directly, independently of portanet's image code.
    local = np.stack(
        [
            np.asarray(
                Image.open(io.BytesIO(b))
                .convert("RGB")
                .resize((16, 16), Image.Resampling.BILINEAR),
                dtype=np.float32,
            )
            / np.float32(255.0)
            for b in blobs
        ]
    )
    assert np.array_equal(answer, portanet.load(recipe_model).predict(local))
    client.close()


def test_bad_images_are_refused_by_index(start_server, recipe_model, model_dir):
    server = start_server(recipe_model, "--max-elements", "2000")
    client = httpclient.InferenceServerClient(server.url)

    def send(blobs: list[bytes]) -> str:
        tensor = httpclient.InferInput("pixels", [len(blobs)], "BYTES")
        tensor.set_data_from_numpy(np.array(blobs, dtype=object), binary_data=True)
        with pytest.raises(httpclient.InferenceServerException) as caught:
            client.infer("recipe", [tensor])
        return str(caught.value)

    good = _encoded(1, "PNG")[0]
    assert "image 1: expected JPEG/PNG/… bytes Pillow can read" in send([good, b"not an image"])
    assert "expected at most 2,000 tensor elements" in send([good] * 3)  # 3 × 16×16×3 = 2,304
    client.close()
    plain = start_server(model_dir / "image.onnx")  # no value range recorded: refused, said why
    client = httpclient.InferenceServerClient(plain.url)
    tensor = httpclient.InferInput("pixels", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([good], dtype=object), binary_data=True)
    with pytest.raises(httpclient.InferenceServerException, match="pixel value range"):
        client.infer("image", [tensor])
    client.close()
