"""The real-case tests find the cases through $TRYON_REAL_CASES as well as beside the checkout."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tests_conftest", Path(__file__).parent / "conftest.py")
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
real_cases_folder = _conftest.real_cases_folder


def test_the_environment_variable_names_the_real_cases_folder(tmp_path):
    assert real_cases_folder({"TRYON_REAL_CASES": str(tmp_path)}) == tmp_path


def test_without_it_the_folder_beside_the_checkout():
    assert real_cases_folder({}) == Path(__file__).resolve().parents[2] / "shared" / "real-cases"
