from __future__ import annotations

from pathlib import Path

import pytest

from amlwait.errors import InputError
from amlwait.submit.circuits import load_circuits
from tests.submit.helpers import write


def circuits_of(tmp_path: Path, text: str) -> list[tuple[str, dict[str, object]]]:
    loaded = load_circuits(write(tmp_path / "circuits.yaml", text))
    return [(c.key, dict(c.params)) for c in loaded.circuits]


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as caught:
        load_circuits(write(tmp_path / "circuits.yaml", text))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_mapping_and_list_forms_with_plant_params_merged_under_circuit_params(
    tmp_path: Path,
) -> None:
    text = """\
        plants:
          PLANT001:
            params: {region: north, epochs: 5}
            circuits:
              CIRCUIT01: {sensor_table: s1, epochs: 7}
              CIRCUIT02: {}
              CIRCUIT03:
          PLANT002:
            circuits: [CIRCUIT01, CIRCUIT02]
        """
    assert circuits_of(tmp_path, text) == [
        ("PLANT001/CIRCUIT01", {"region": "north", "epochs": 7, "sensor_table": "s1"}),
        ("PLANT001/CIRCUIT02", {"region": "north", "epochs": 5}),
        ("PLANT001/CIRCUIT03", {"region": "north", "epochs": 5}),
        ("PLANT002/CIRCUIT01", {}),
        ("PLANT002/CIRCUIT02", {}),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "plants:\n  P1:\n    circuits: [C1]\n  P2:\n    circuits: [C1]\n  P1:\n"
            "    circuits: [C2]\n",
            ":6: plants.P1: appears twice (first at line 2)",
        ),
        (
            "plants:\n  P1:\n    circuits:\n      C1: {}\n      C1: {a: 1}\n",
            ":5: plants.P1.circuits.C1: appears twice (first at line 4)",
        ),
        (
            "plants:\n  P1:\n    circuits: [C1, C2, C1]\n",
            ":3: plants.P1.circuits[2]: circuit C1 appears twice (first at line 3)",
        ),
        (
            "plants:\n  P1:\n    circuits:\n      C1: {table: a, table: b}\n",
            ":4: plants.P1.circuits.C1.table: appears twice",
        ),
        (
            "plants:\n  PLANT-1:\n    circuits: [C1]\n",
            ":2: plants.PLANT-1: 'PLANT-1' is not a valid plant name",
        ),
        (
            "plants:\n  P1:\n    circuits:\n      1C: {}\n",
            ":4: plants.P1.circuits.1C: '1C' is not a valid circuit name",
        ),
        ("plants:\n  P1:\n    circuits: []\n", ":3: plants.P1.circuits: plant P1 has no circuits"),
        ("plants:\n  P1: {}\n", ":2: plants.P1.circuits: plant P1 has no circuits"),
        (
            "plants:\n  P1:\n    circuits: [C1]\nplant_defaults: {}\n",
            ":4: plant_defaults: unknown key; expected plants",
        ),
        (
            "plants:\n  P1:\n    circutis: [C1]\n",
            ":3: plants.P1.circutis: unknown key; expected circuits, params",
        ),
        ("- P1\n- P2\n", ":1: the document: expected a mapping with plants"),
        ("plants: [P1]\n", ":1: plants: expected a mapping of plant names"),
        (
            "plants:\n  P1:\n    circuits:\n      C1: {plant: x}\n",
            ":4: plants.P1.circuits.C1.plant: plant is set by amlwait submit",
        ),
        (
            "plants:\n  P1:\n    circuits:\n      C1: {table: [a, b]}\n",
            ":4: plants.P1.circuits.C1.table: expected a string, number or boolean, not list",
        ),
        ("plants:\n  P1:\n    circuits: [C1\n", ":4: not valid YAML"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(str(tmp_path / "circuits.yaml"))
    assert expected in message


def test_only_selects_circuits_and_whole_plants_and_refuses_unknown_ones(tmp_path: Path) -> None:
    loaded = load_circuits(
        write(
            tmp_path / "c.yaml",
            "plants:\n  P1:\n    circuits: [C1, C2]\n  P2:\n    circuits: [C1]\n",
        )
    )
    assert [c.key for c in loaded.select(["P2", "P1/C2"])] == ["P1/C2", "P2/C1"]
    with pytest.raises(InputError, match=r"--only P1/C9: not in .*\(P1 has C1, C2\)"):
        loaded.select(["P1/C9"])
