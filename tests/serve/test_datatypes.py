"""The protocol's datatype names and its error type, shared by every serve module."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from portanet.serve.datatypes import DATATYPES, ModelOutputError, ProtocolError, datatype_of


@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_every_datatype_names_its_own_dtype(name):
    assert datatype_of(DATATYPES[name]) == name


def test_strings_and_objects_are_bytes():
    assert datatype_of("str") == "BYTES"
    assert datatype_of(np.dtype(object)) == "BYTES"
    assert datatype_of(np.dtype("U3")) == "BYTES"


def test_a_protocol_error_keeps_its_status_across_processes():
    """Errors raised in worker processes come back pickled: the status must survive."""
    error = pickle.loads(pickle.dumps(ProtocolError("too big", 413)))
    assert isinstance(error, ProtocolError) and error.status == 413 and str(error) == "too big"
    assert not issubclass(ModelOutputError, ProtocolError)  # a 500, never a client's 4xx
