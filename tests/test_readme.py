"""The README's commands are real: every `hierdiffuse` command parses, and the fast ones run."""

import os
import re
import shlex
import shutil

import pytest

from hierdiffuse_tf import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\\\n\s*", " ", block)  # Join continued lines.
        for line in block.splitlines():
            line = line.split("  #")[0].strip().rstrip("&").strip()
            line = re.sub(r"^(\w+=('[^']*'|\S+)\s+)+", "", line)  # Drop VAR=value prefixes.
            for part in line.split("&&"):
                if part.strip().startswith("hierdiffuse "):
                    commands.append(shlex.split(part.strip())[1:])
    return commands


def test_readme_has_the_two_quickstart_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    quickstart = text.split("## Quickstart")[1].split("## ")[0]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, flags=re.S)
    assert blocks[0].strip().startswith('pip install -e ".[all]"') and "hierdiffuse train" in blocks[0]
    assert blocks[1].strip() == "python -m pytest"
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert ci.strip().splitlines()[-1] == "python -m pytest"


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a[:2]))
def test_every_readme_command_parses(argv):
    args = cli.build_parser().parse_args(argv)
    assert args.command == argv[0]


def test_fast_readme_commands_run(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(os.path.join(ROOT, "README.md"), readme)
    results = os.path.join(ROOT, "results")
    assert cli.main(["experiment", "readme", "--out", results, "--readme", str(readme)]) == 0
    assert "results:bench_inference" in readme.read_text()
