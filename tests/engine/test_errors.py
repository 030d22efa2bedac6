from pathlib import Path

from engine.errors import InputError


def test_an_input_error_names_its_file_or_its_option_as_the_caller_calls_it():
    assert str(InputError("cannot be read", Path("a.png"))) == "a.png: cannot be read"
    error = InputError("must be a positive number of seconds, not -1", option="switch_at")
    assert str(error) == "switch_at must be a positive number of seconds, not -1"
    assert error.describe("--switch-at") == "--switch-at must be a positive number of seconds, not -1"
    assert InputError("no default model").describe("--model") == "no default model"
