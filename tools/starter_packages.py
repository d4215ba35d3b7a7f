"""Print the system (apt) or Python (pip) packages the starter dataset needs: `python tools/starter_packages.py apt`.

Reads the lists from ussnb/data/recipes/starter.py without importing the package (so it works before install)."""
import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "ussnb" / "data" / "recipes" / "starter.py"
NAMES = {"apt": "STARTER_APT_PACKAGES", "pip": "STARTER_PIP_PACKAGES"}


def packages(kind: str) -> list[str]:
    if not SRC.is_file():
        return []
    for node in ast.walk(ast.parse(SRC.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == NAMES[kind] for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


if __name__ == "__main__":
    print(" ".join(packages(sys.argv[1] if len(sys.argv) > 1 else "apt")))
