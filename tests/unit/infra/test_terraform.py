"""Terraform hygiene: formatting, the standard module layout, typed and described variables, validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.infra.terraform_tools import EXAMPLES, MODULES, TERRAFORM_DIR, blocks, load_hcl, run_terraform

MODULE_NAMES = sorted(p.name for p in MODULES.iterdir() if p.is_dir())
EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())


def test_expected_modules_and_examples_exist() -> None:
    assert set(MODULE_NAMES) >= {"policies", "storage", "queue", "access", "functions", "gateway", "database"}
    assert set(EXAMPLE_NAMES) == {"aws", "localstack", "minio"}


def test_terraform_fmt_check_recursive(tmp_path: Path) -> None:
    done = run_terraform(["fmt", "-check", "-recursive", "-diff", "-no-color"], TERRAFORM_DIR, tmp_path)
    assert done.returncode == 0, f"terraform fmt would change:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_has_standard_layout_and_typed_described_variables(name: str) -> None:
    module = MODULES / name
    for filename in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        assert (module / filename).is_file(), f"{name}/{filename} missing"
    variables = blocks(load_hcl(module / "variables.tf"), "variable")
    assert variables, name
    for var, body in variables.items():
        assert body.get("type"), f"{name}: variable {var} has no type"
        assert str(body.get("description", "")).strip(), f"{name}: variable {var} has no description"
    outputs = blocks(load_hcl(module / "outputs.tf"), "output")
    assert outputs, name
    for out, body in outputs.items():
        assert str(body.get("description", "")).strip(), f"{name}: output {out} has no description"


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_has_readme_and_described_variables(name: str) -> None:
    example = EXAMPLES / name
    readme = (example / "README.md").read_text()
    for needle in ("terraform init", "terraform plan", "terraform apply", "Prerequisites", "TMI_"):
        assert needle in readme, f"examples/{name}/README.md lacks {needle!r}"
    for var, body in blocks(load_hcl(example / "variables.tf"), "variable").items():
        assert body.get("type") and body.get("description"), f"{name}: variable {var}"


def _provider_free(module: Path) -> bool:
    text = "".join(p.read_text() for p in module.glob("*.tf"))
    return "required_providers" not in text and 'resource "' not in text and 'data "' not in text


def test_provider_free_modules_validate(tmp_path: Path) -> None:
    free = [MODULES / n for n in MODULE_NAMES if _provider_free(MODULES / n)]
    assert [m.name for m in free] == ["policies"]
    for module in free:
        data_dir = tmp_path / module.name
        init = run_terraform(["init", "-backend=false", "-input=false", "-no-color"], module, data_dir)
        assert init.returncode == 0, init.stdout + init.stderr
        done = run_terraform(["validate", "-no-color"], module, data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "The configuration is valid" in done.stdout


# ---- a provider-free "validate": names referenced across variables, locals, modules and outputs resolve

META_ARGUMENTS = {"source", "version", "providers", "depends_on", "count", "for_each", "__comments__"}


def _tf_dirs() -> list[Path]:
    return [MODULES / n for n in MODULE_NAMES] + [EXAMPLES / n for n in EXAMPLE_NAMES]


def _declared(directory: Path) -> tuple[dict[str, dict[str, object]], set[str], dict[str, dict[str, object]]]:
    variables: dict[str, dict[str, object]] = {}
    local_names: set[str] = set()
    module_calls: dict[str, dict[str, object]] = {}
    for path in sorted(directory.glob("*.tf")):
        document = load_hcl(path)
        variables.update(blocks(document, "variable"))
        local_names.update(blocks(document, "locals"))
        module_calls.update(blocks(document, "module"))
    return variables, local_names, module_calls


def _code(directory: Path) -> str:
    import re

    text = "\n".join(p.read_text() for p in sorted(directory.glob("*.tf")))
    return re.sub(r"(?m)^\s*#.*$", "", text)  # comments may mention names freely


@pytest.mark.parametrize("directory", _tf_dirs(), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_every_var_and_local_reference_is_declared(directory: Path) -> None:
    import re

    variables, local_names, _ = _declared(directory)
    code = _code(directory)
    for name in set(re.findall(r"\bvar\.(\w+)", code)):
        assert name in variables, f"{directory.name}: var.{name} is not declared"
    for name in set(re.findall(r"\blocal\.(\w+)", code)):
        assert name in local_names, f"{directory.name}: local.{name} is not declared"
    unused = {v for v in variables if f"var.{v}" not in code}
    assert unused == set(), f"{directory.name}: variables never used: {unused}"


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_module_calls_match_the_called_modules(example: str) -> None:
    import re

    directory = EXAMPLES / example
    _, _, calls = _declared(directory)
    assert calls, example
    outputs_of: dict[str, set[str]] = {}
    for call_name, body in calls.items():
        source = (directory / str(body["source"])).resolve()
        module_variables, _, _ = _declared(source)
        given = set(body) - META_ARGUMENTS
        assert given <= set(module_variables), (
            f"{example}.{call_name}: unknown inputs {given - set(module_variables)}"
        )
        required = {v for v, spec in module_variables.items() if "default" not in spec}
        assert required <= given, f"{example}.{call_name}: missing required inputs {required - given}"
        outputs_of[call_name] = set(blocks(load_hcl(source / "outputs.tf"), "output"))
    for call_name, output in set(re.findall(r"\bmodule\.(\w+)\.(\w+)", _code(directory))):
        assert call_name in outputs_of, f"{example}: module.{call_name} is not called"
        assert output in outputs_of[call_name], f"{example}: module.{call_name} has no output {output}"


@pytest.mark.parametrize("directory", _tf_dirs(), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_every_resource_and_data_reference_is_declared(directory: Path) -> None:
    import re

    declared_resources: set[tuple[str, str]] = set()
    declared_data: set[tuple[str, str]] = set()
    for path in directory.glob("*.tf"):
        document = load_hcl(path)
        for kind, target in (("resource", declared_resources), ("data", declared_data)):
            for item in document.get(kind, []):
                for rtype, named in item.items():
                    target.update((rtype, name) for name in named)
    # A `moved` block's `from` names an address that no longer exists, by definition.
    code = re.sub(r"(?m)^\s*from\s*=.*$", "", _code(directory))
    for rtype, name in set(re.findall(r"\bdata\.((?:aws|minio)_[a-z0-9_]+)\.([a-z0-9_]+)", code)):
        assert (rtype, name) in declared_data, f"{directory.name}: data.{rtype}.{name} is not declared"
    for rtype, name in set(re.findall(r"(?<![\w.])((?:aws|minio)_[a-z0-9_]+)\.([a-z0-9_]+)", code)):
        assert (rtype, name) in declared_resources, f"{directory.name}: {rtype}.{name} is not declared"
