"""Packaging, registry and the demo command."""

import importlib.metadata as md
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from sscell_live import registry
from sscell_live.cli import main, run_demo

ROOT = Path(__file__).resolve().parents[1]


def test_distribution_claims_only_the_sscell_live_namespace():
    assert md.distribution("sscell_live").read_text("top_level.txt").split() == ["sscell_live"]
    # run outside the repository so its folders are not on sys.path
    code = "import importlib.util as u; print(u.find_spec('devices'), u.find_spec('plans'), u.find_spec('sscell_live.devices') is not None, u.find_spec('sscell_live.plans') is not None)"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True).stdout.split()
    assert out == ["None", "None", "True", "True"]


def test_every_package_folder_is_listed_for_installation():
    # an editable install finds unlisted subpackages anyway; a wheel would not
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in (("sscell_live", "sscell_live"), ("devices", "sscell_live.devices"), ("plans", "sscell_live.plans")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found == listed


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    head = "\n".join(readme.splitlines()[:60])
    assert head.count("```bash") >= 2
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci
    test_cmd = readme.split("**Run the tests**")[1].split("```bash\n")[1].split("\n")[0]
    assert f"TEST_COMMAND='{test_cmd}'" in ci
    assert "pip install torch==2.13.0" in test_cmd and "pytest" in test_cmd
    assert test_cmd.index("torch==2.13.0") < test_cmd.index("pip install -e")


def test_registry_metric_units_and_sign_convention():
    assert registry.metric_unit("crack_volume_um3") == "um3"
    assert registry.metric_unit("contact_fraction_top") == "1"
    with pytest.raises(KeyError, match="unknown metric"):
        registry.metric_unit("contact_fraction_middle")
    assert registry.stripping_interface(1.0) == "top"
    assert registry.stripping_interface(-0.1) == "bottom"
    assert registry.stripping_interface(0.0) is None
    # every registered name carries its unit in the registry; the unit-bearing suffixes agree
    for name, spec in registry.METRICS.items():
        if name.endswith("_um3"):
            assert spec.unit == "um3", name
        if name.endswith("_mA_cm2"):
            assert spec.unit == "mA/cm2", name


def test_start_metadata_schema_names_every_problem():
    good = {
        "sscell_schema_version": registry.START_SCHEMA_VERSION,
        "experiment_uid": "e1",
        "run_kind": "tomo_scan",
        "step_index": 0,
        "scan_index": 0,
        "cell": {"chemistry": "lps", "diameter_um": 150.0, "area_cm2": 1.77e-4},
        "current_sign_convention": registry.CONVENTIONS["current_sign"],
    }
    registry.validate_start_metadata(good)
    bad = dict(good, run_kind="scan", sscell_schema_version=99)
    del bad["experiment_uid"]
    with pytest.raises(ValueError) as err:
        registry.validate_start_metadata(bad)
    msg = str(err.value)
    assert "experiment_uid" in msg and "run_kind" in msg and "99" in msg


def test_semantic_classes_map_to_material_codes():
    m = registry.SEMANTIC_TO_MATERIAL
    assert set(m) == set(registry.Semantic)
    assert m[registry.Semantic.VOID_TOP] == registry.Material.VACUUM
    assert m[registry.Semantic.LI_IN_CRACK] == registry.Material.LI
    assert m[registry.Semantic.CRACK] == registry.Material.VACUUM


def test_demo_stores_an_experiment_that_ends_in_a_short(tmp_path, capsys):
    path = run_demo("lps", seed=2, n_lateral=64, out=tmp_path, scan_angles=0)
    printed = capsys.readouterr().out
    assert "SHORT" in printed and str(path.resolve()) in printed
    with h5py.File(path) as f:
        shorted = f["scans/shorted"][()]
        assert shorted[-1] and not shorted[:-1].any()  # stops at the first short
        rec = f["voltage_record"][()]
        assert np.all(np.diff(rec[:, 0]) > 0)  # cell time increases
        # current reverses every half cycle and the voltage follows its sign before the short
        cur = f["scans/current_mA_cm2"][()]
        assert np.all(cur[::2] > 0) and np.all(cur[1::2] < 0)
        v = f["scans/voltage_V"][:-1]
        assert np.all(np.sign(v) == np.sign(cur[:-1]))
        assert abs(f["scans/voltage_V"][-1]) < 0.01  # shorted: near 0 V
        assert f["labels_first"].shape == f["labels_last"].shape
        meta = json.loads(f.attrs["metadata"])
        assert meta["cell"]["chemistry"] == "lps" and meta["twin"]["seed"] == 2


def test_demo_cli_rejects_unknown_chemistry(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--chemistry", "nmc"])
    assert "invalid choice" in capsys.readouterr().err
