"""``errors``: the exceptions that cross modules, what each is (so the right ``except`` catches
it), and that every module raising one raises this very class, not a look-alike."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import target_planhat
from target_planhat import errors

CROSSING = [
    name
    for name, value in vars(errors).items()
    if isinstance(value, type)
    and issubclass(value, BaseException)
    and value.__module__ == errors.__name__
]


def test_errors_holds_the_exceptions_that_cross_modules() -> None:
    assert {"StoreError", "PathError", "MappingError", "FilterError", "InvalidActivity"} <= set(
        CROSSING
    )
    assert "RecordSchemaError" in CROSSING


@pytest.mark.parametrize("name", CROSSING)
def test_each_says_why_it_exists(name: str) -> None:
    assert (getattr(errors, name).__doc__ or "").strip(), f"errors.{name} has no docstring"


@pytest.mark.parametrize(
    ("name", "base"),
    [
        # Bad settings and bad records are ValueErrors: settings.py turns a PathError,
        # MappingError or FilterError into the ConfigError that names the setting.
        ("PathError", ValueError),
        ("MappingError", ValueError),
        ("FilterError", ValueError),
        ("InvalidActivity", ValueError),
        ("RecordSchemaError", ValueError),
        # A failing store is no bad value: the run stops (exit 1), it is never a config error.
        ("StoreError", RuntimeError),
    ],
)
def test_what_each_is(name: str, base: type) -> None:
    assert issubclass(getattr(errors, name), base)


def test_store_error_is_not_a_value_error() -> None:
    assert not issubclass(errors.StoreError, ValueError)


def test_record_schema_error_is_not_the_sdks_invalid_record() -> None:
    """The SDK logs its InvalidRecord with a traceback and the record (which can hold secrets)."""
    from singer_sdk.exceptions import InvalidRecord

    assert not issubclass(errors.RecordSchemaError, InvalidRecord)


def test_invalid_activity_carries_a_stable_reason_and_its_detail() -> None:
    exc = errors.InvalidActivity("no_identifier", "externalId and email are empty")
    assert (exc.reason, exc.detail) == ("no_identifier", "externalId and email are empty")
    assert str(exc) == "no_identifier: externalId and email are empty"


def _modules() -> list[str]:
    return [f"target_planhat.{info.name}" for info in pkgutil.iter_modules(target_planhat.__path__)]


@pytest.mark.parametrize("module", _modules())
def test_no_module_defines_its_own_copy(module: str) -> None:
    """A name from errors.py seen in another module is errors.py's class (re-exported), never a
    second class of the same name that an ``except errors.X`` would miss."""
    loaded = importlib.import_module(module)
    for name in CROSSING:
        if hasattr(loaded, name):
            assert getattr(loaded, name) is getattr(errors, name), f"{module}.{name}"
