"""The README's and docs/' commands are real: every `hierdiffuse` command parses, the fast ones run,
and every relative link points at a file, and a heading, that exists."""

import functools
import glob
import os
import re
import shlex
import shutil

import pytest

from hierdiffuse_tf import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def markdown_files():
    """README.md and every docs/*.md, relative to the repository root."""
    return ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def readme_commands():
    commands = []
    for name in markdown_files():
        text = open(os.path.join(ROOT, name)).read()
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


def test_the_docs_hold_commands():
    pages = {name for name in markdown_files() if "```bash" in open(os.path.join(ROOT, name)).read()}
    assert {"docs/datasets.md", "docs/training.md", "docs/experiments.md", "docs/serving.md",
            "docs/benchmarks.md"} <= pages


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a[:2]))
def test_every_readme_command_parses(argv):
    args = cli.build_parser().parse_args(argv)
    assert args.command == argv[0]


@functools.lru_cache(maxsize=None)  # Read each page once, however many links point into it.
def heading_anchors(path: str) -> frozenset[str]:
    """The `#anchors` of a Markdown file's headings, as GitHub makes them: lowercased, punctuation
    dropped, spaces as hyphens, and `-1`, `-2`, ... after a repeated heading."""
    text = re.sub(r"```.*?```", "", open(path).read(), flags=re.S)
    anchors, seen = set(), {}
    for title in re.findall(r"^#{1,6}\s+(.*?)\s*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return frozenset(anchors)


@pytest.mark.parametrize("name", markdown_files())
def test_every_relative_link_points_at_a_file_and_heading(name):
    text = open(os.path.join(ROOT, name)).read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # Code blocks hold no links.
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):  # [text](target) and ![alt](target)
        path, _, anchor = target.partition("#")
        if re.match(r"^[a-z][a-z0-9+.-]*:", path):  # A URL.
            continue
        file = os.path.normpath(os.path.join(ROOT, os.path.dirname(name), path or os.path.basename(name)))
        if not os.path.exists(file):
            missing.append(target)
        elif anchor and file.endswith(".md") and anchor not in heading_anchors(file):
            missing.append(target)  # A heading renamed under its links.
    assert not missing, f"{name} links to missing files or headings: {missing}"


def test_fast_readme_commands_run(tmp_path, monkeypatch):
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path / "README.md")
    shutil.copytree(os.path.join(ROOT, "docs"), tmp_path / "docs")
    results = os.path.join(ROOT, "results")
    monkeypatch.chdir(tmp_path)  # `experiment readme` splices README.md and docs/*.md of the current directory.
    assert cli.main(["experiment", "readme", "--out", results]) == 0
    assert "results:bench_inference" in (tmp_path / "docs" / "benchmarks.md").read_text()
    # One file, named.
    assert cli.main(["experiment", "readme", "--out", results, "--readme", "docs/benchmarks.md"]) == 0


def test_splice_docs_fills_each_file_and_leaves_files_without_blocks_alone(tmp_path, monkeypatch):
    from hierdiffuse_tf import experiments

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "t.md").write_text("| new |\n")
    (tmp_path / "docs").mkdir()
    block = "<!-- results:t -->\nold\n<!-- /results:t -->\n"
    (tmp_path / "README.md").write_text("no block; prose may quote `<!-- results:t -->`\n")
    (tmp_path / "docs" / "a.md").write_text(block)
    os.utime(tmp_path / "README.md", (0, 0))
    monkeypatch.chdir(tmp_path)
    assert experiments.splice_docs("results") == {os.path.join("docs", "a.md"): ["t"]}
    assert (tmp_path / "docs" / "a.md").read_text() == "<!-- results:t -->\n| new |\n<!-- /results:t -->\n"
    assert os.stat(tmp_path / "README.md").st_mtime == 0  # Not rewritten.


def test_the_readme_layout_matches_the_tree():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"## Layout\n\n```text\n(.*?)```", text, flags=re.S).group(1)
    named, parent = set(), {}
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent >= 30:  # A description's second line.
            continue
        entries = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]  # The path column.
        for entry in (e.strip() for e in entries.split(",") if e.strip()):
            base = max(((i, p) for i, p in parent.items() if i < indent), default=(0, ""))[1]
            path = os.path.normpath(os.path.join(base, entry))
            named.add(path)
            if entry.endswith("/") and entry == entries.strip():
                parent = {i: p for i, p in parent.items() if i < indent}
                parent[indent] = path
    assert [p for p in named if not os.path.exists(os.path.join(ROOT, p))] == []
    packages = {os.path.relpath(os.path.dirname(p), ROOT)
                for p in glob.glob(os.path.join(ROOT, "hierdiffuse_tf", "*", "__init__.py"))}
    shown = named | {os.path.dirname(p) for p in named}  # A package is shown by a file in it too.
    assert packages <= shown, f"packages the layout leaves out: {sorted(packages - shown)}"
