"""The README's custom-agent example runs as written."""

import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_updater_example_runs(tmp_path, capsys):
    (block,) = [b for b in python_blocks() if "TrustRegionUpdater(" in b]
    script = tmp_path / "example.py"
    script.write_text(block)
    history = runpy.run_path(str(script), run_name="__main__")["history"]
    assert len(capsys.readouterr().out.strip().splitlines()) == len(history)
    # a random labeller gets about 3.3 of 10 fruits right
    assert history[0] < 4.5 and history[-1] >= 7.0, history
