"""portanet.errors: one exception root, one exit code per kind, and the helpers that quote
third-party errors and name mismatches in messages."""

import pytest

from portanet import errors


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (errors.InputError, 2),
        (errors.ModelLoadError, 3),
        (errors.ConversionError, 3),
        (errors.ParityError, 1),
        (errors.UnsafeModelError, 4),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_each_kind_derives_from_the_root_and_has_its_exit_code(kind, code):
    assert issubclass(kind, errors.PortanetError)
    assert kind("x").exit_code == code


def test_every_public_error_is_covered_above():
    kinds = {
        v
        for v in vars(errors).values()
        if isinstance(v, type) and issubclass(v, errors.PortanetError)
    }
    assert kinds == {
        errors.PortanetError,
        errors.InputError,
        errors.ModelLoadError,
        errors.ConversionError,
        errors.ParityError,
        errors.UnsafeModelError,
    }


def test_a_parity_error_carries_its_report():
    report = {"outputs": []}
    exc = errors.ParityError("differs", report=report)
    assert exc.report is report and str(exc) == "differs"
    assert errors.ParityError("differs").report is None


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("\n  first line  \nsecond"), "first line"),
        (KeyError(), "KeyError"),
        (RuntimeError("x" * 400), "x" * 299 + "…"),
        (OSError("   "), "OSError"),
    ],
    ids=["first-line", "empty", "cut", "blank"],
)
def test_first_line_quotes_one_line(exc, line):
    assert errors.first_line(exc) == line


def test_first_line_respects_the_limit():
    assert errors.first_line(ValueError("abcdef"), limit=4) == "abc…"
    assert errors.first_line(ValueError("abcd"), limit=4) == "abcd"


@pytest.mark.parametrize(
    ("expected", "got", "message"),
    [
        (["a", "b"], ["b", "a"], None),
        (["a", "b"], ["a"], "missing ['b']"),
        (["a"], ["a", "c"], "unknown ['c']"),
        (["a"], ["a", "a"], "repeated ['a']"),
        (["a", "b"], ["c", "c"], "missing ['a', 'b']; unknown ['c', 'c']; repeated ['c']"),
    ],
    ids=["same", "missing", "unknown", "repeated", "all"],
)
def test_name_mismatch_says_what_differs(expected, got, message):
    assert errors.name_mismatch(expected, got) == message
