"""identifiers.py: NHS numbers across the whole capacity, and registration number formats."""

from __future__ import annotations

import re

import nhs_number
import pytest

from carerecord.demo import identifiers
from carerecord.demo.identifiers import nhs_check_digit
from carerecord.demo.identifiers import nhs_number as demo_nhs_number


def test_check_digit_agrees_with_the_nhs_number_package() -> None:
    for base in ("999000000", "999123456", "943476591", "401023213"):
        check = nhs_check_digit(base)
        if check is None:
            assert not any(nhs_number.is_valid(base + str(d)) for d in range(10))
        else:
            assert nhs_number.is_valid(base + str(check))


def test_nhs_numbers_are_unique_and_valid_for_the_first_hundred_thousand_people() -> None:
    numbers = [demo_nhs_number(i, 2026) for i in range(100_000)]
    assert len(set(numbers)) == len(numbers)
    assert all(nhs_number.is_valid(n) for n in numbers[::997])


def test_nhs_number_of_a_person_depends_only_on_index_and_seed() -> None:
    assert demo_nhs_number(123, 5) == demo_nhs_number(123, 5)
    assert demo_nhs_number(123, 5) != demo_nhs_number(123, 6)


def test_person_indices_beyond_capacity_are_refused() -> None:
    with pytest.raises(ValueError):
        demo_nhs_number(identifiers.MAX_PEOPLE, 1)


@pytest.mark.parametrize(("kind", "pattern"), [("gmc", r"\d{7}"), ("gphc", r"\d{7}"),
                                               ("hcpc", r"PA\d{6}"), ("nmc", r"\d{2}[A-Z]\d{4}[A-Z]")])
def test_registration_numbers_have_the_register_format_and_are_unique(kind: str, pattern: str) -> None:
    values = [identifiers.registration(kind, serial)["value"] for serial in range(5_000)]
    assert all(re.fullmatch(pattern, v) for v in values)
    assert len(set(values)) == len(values)
