"""Compile the .po catalogues to .mo in pure Python (no GNU gettext needed)."""
from pathlib import Path

import polib

BASE_DIR = Path(__file__).resolve().parent.parent


def compile_messages() -> list[Path]:
    """Compile every locale/*/LC_MESSAGES/*.po whose .mo is missing or older."""
    compiled = []
    for po_path in sorted((BASE_DIR / "locale").glob("*/LC_MESSAGES/*.po")):
        mo_path = po_path.with_suffix(".mo")
        if not mo_path.exists() or mo_path.stat().st_mtime < po_path.stat().st_mtime:
            polib.pofile(str(po_path)).save_as_mofile(str(mo_path))
            compiled.append(mo_path)
    return compiled
