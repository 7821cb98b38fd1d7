"""portanet.cli.options: the shared options mean the same in every command."""

import pytest
import typer
from typer.testing import CliRunner

from portanet.cli.options import (
    ChannelOrder,
    Provider,
    choice_value,
    providers_arg,
    split_names,
)


@pytest.mark.parametrize(
    ("values", "names"),
    [
        (None, []),
        (["a"], ["a"]),
        (["a,b", "c"], ["a", "b", "c"]),
        ([" a , ,b "], ["a", "b"]),
    ],
    ids=["none", "one", "comma-and-repeat", "blanks"],
)
def test_split_names_flattens_repeats_and_commas(values, names):
    assert split_names(values) == names


@pytest.mark.parametrize(
    ("values", "providers"),
    [(None, "auto"), (["auto"], "auto"), (["cuda,cpu"], ["cuda", "cpu"]), (["cpu"], ["cpu"])],
)
def test_providers_arg_is_what_load_takes(values, providers):
    assert providers_arg(values) == providers


def test_choice_value():
    assert choice_value(None) is None
    assert choice_value(ChannelOrder.bgr) == "bgr"


def _provider_app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def main(provider: Provider = None) -> None:
        print(providers_arg(provider))

    return app


@pytest.mark.parametrize(
    ("args", "output"),
    [
        ([], "auto"),
        (["--provider", "cuda,cpu"], "['cuda', 'cpu']"),
        (["--provider", "cuda", "--provider", "cpu"], "['cuda', 'cpu']"),
        (["--provider", "CPUExecutionProvider"], "['CPUExecutionProvider']"),
    ],
    ids=["default", "comma", "repeat", "onnxruntime-name"],
)
def test_the_provider_option_accepts(args, output):
    result = CliRunner().invoke(_provider_app(), args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "gpu"], "expected one of auto, cpu, cuda, tensorrt"),
        (["--provider", "auto,cpu"], "'auto' picks the providers itself"),
    ],
    ids=["unknown", "auto-with-others"],
)
def test_the_provider_option_refuses(args, message):
    result = CliRunner().invoke(_provider_app(), args)
    assert result.exit_code == 2
    assert message in result.output
