"""Apps depend in one direction: tenants <- notifications <- watch <- outreach, and `config`
wires them together (CONVENTIONS, "The shape of the system"). Read from the source with
`ast`, so an import inside a function counts as much as one at the top, and nothing is run."""
import ast
from pathlib import Path

from django.conf import settings

ORDER = ["tenants", "notifications", "watch", "outreach"]  # an app may import only apps to its left
WIRING = "config"  # imports every app; none of them imports it (settings name it by strings only)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file, relative ones resolved, and for every
    importlib.import_module / __import__ of a literal name."""
    package = ".".join(path.relative_to(settings.BASE_DIR).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations() -> list[str]:
    found = []
    for rank, app in enumerate(ORDER):
        for path in sorted((settings.BASE_DIR / app).rglob("*.py")):
            for line, module in imported_modules(path):
                top = module.split(".")[0]
                where = f"{path.relative_to(settings.BASE_DIR)}:{line} imports {module}"
                if top == WIRING:
                    found.append(f"{where} (no app imports config)")
                elif top in ORDER and ORDER.index(top) > rank:
                    found.append(f"{where} ({app} may import only {', '.join(ORDER[:rank]) or 'no other app'})")
    return found


def test_no_app_imports_an_app_to_its_right_or_config():
    assert violations() == []


def test_the_import_check_sees_imports_inside_functions_and_relative_ones(tmp_path, settings):
    app = tmp_path / "tenants"
    (app / "sub").mkdir(parents=True)
    (app / "sub" / "mod.py").write_text(
        "def ready():\n    import config.celery\n"
        "from ...watch import models\n"
        "from .. import actions\n"
        "importlib.import_module('outreach.hooks')\n"
    )
    settings.BASE_DIR = tmp_path
    assert sorted(module for _, module in imported_modules(app / "sub" / "mod.py")) == [
        "config.celery", "outreach.hooks", "tenants.actions", "watch.models",
    ]
    assert len(violations()) == 3
