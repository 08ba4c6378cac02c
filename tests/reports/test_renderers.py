"""Every renderer on the hand-built finding: content, escaping, determinism, edge cases."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from networkx.readwrite.graphml import GraphMLReader

from unpacksim.reports.formats import FORMATS, render
from unpacksim.reports.records import Finding, GraphData, GraphEdge, GraphNode, Replay
from unpacksim.reports.render_graph import render_dot, render_graphml
from unpacksim.reports.render_html import render_html
from unpacksim.reports.render_markdown import md_code, md_text, render_markdown
from unpacksim.reports.render_text import render_text
from unpacksim.reports.svg import layout_graphs
from unpacksim.reports.textutil import clean

UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _empty(finding: Finding) -> Finding:
    return dataclasses.replace(
        finding,
        explanation="",
        trace=(),
        fault_plan=(),
        graph_before=GraphData(),
        graph_after=GraphData(),
        path=(),
        replay=Replay(command="unpacksim replay x.json"),
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_safely_and_deterministically(finding: Finding, fmt: str) -> None:
    out = render(finding, fmt)
    assert out == render(finding, fmt)
    assert not UNSAFE.search(out), f"{fmt} let a control or bidi character through"
    assert out.endswith("\n")
    assert render(_empty(finding), fmt).endswith("\n")


def test_unknown_format_is_refused(finding: Finding) -> None:
    with pytest.raises(ValueError, match="unknown report format 'pdf': use one of html, md"):
        render(finding, "pdf")


def test_clean_makes_unsafe_characters_visible() -> None:
    assert clean("a\x1b[31mb\u202ec\ud800") == "a\\x1b[31mb\\u202ec\\ud800"
    assert clean("line\nnext\ttab") == "line\\nnext\\ttab"
    assert clean("line\nnext", keep_newlines=True) == "line\nnext"
    assert clean("plain sha256:ab") == "plain sha256:ab"


# --- text ------------------------------------------------------------------------------------


def test_text_tells_the_story_in_order(finding: Finding) -> None:
    out = render_text(finding)
    heads = [
        "FINDING f-0123456789ab",
        "WHAT HAPPENED",
        "ACTORS",
        "PROGRAM",
        "SCHEDULE",
        "FAULT PLAN",
        "TRACE",
        "GRAPH",
        "REPLAY",
        "VERSIONS",
    ]
    positions = [out.index(h) for h in heads]
    assert positions == sorted(positions)
    assert "parent_reachable_at_prepare broken (implementation: seed)" in out
    assert '!! fault content.ref_lock(key="layer-sha256:' in out
    assert "<- content.writer.commit Unavailable (injected): ref " in out
    assert "parent snapshot sha256:" + "1" * 64 + " does not exist: not found" in out
    assert "pull-3  .. snapshots.stat never completed" in out
    assert "content.writer.commit -> Unavailable on hit 1: reached 1x, fired at hit 1" in out
    assert "snapshots.commit -> AlreadyExists on every hit" in out and "never reached" in out
    assert "violating path: image app:v1 (gone after) -> " in out
    assert "no longer present: snapshot sha256:" + "1" * 64 in out
    assert (
        "unpacksim replay findings/f-0123456789ab.json\n  seed: 7\n  hypothesis blob: AXic" in out
    )
    assert "\\x1b[31m" in out and "\\u202eevil" in out


def test_text_wraps_prose_at_100_columns(finding: Finding) -> None:
    story = render_text(finding).split("WHAT HAPPENED\n")[1].split("\n\nACTORS")[0]
    assert max(len(line) for line in story.splitlines()) <= 100


# --- Markdown --------------------------------------------------------------------------------


def test_markdown_escapes_prose_and_code() -> None:
    assert md_text("<b>*x*</b> & [l](u)") == "\\<b\\>\\*x\\*\\</b\\> \\& \\[l\\](u)"
    assert md_text("- item\n1. first\n# head") == "\\- item\n1\\. first\n\\# head"
    assert md_code("a`b") == "``a`b``"
    assert md_code("`x") == "`` `x ``"
    assert md_code("a|b", in_table=True) == "`a\\|b`"


def test_markdown_has_the_sections_and_no_live_html(finding: Finding) -> None:
    out = render_markdown(finding)
    for head in (
        "# Finding `f-0123456789ab`",
        "## What happened",
        "## Program",
        "## Replay",
        "## Fault plan",
        "## Trace",
        "## Reference graph",
        "## Versions",
    ):
        assert head in out
    assert "```sh\nunpacksim replay findings/f-0123456789ab.json\n```" in out
    # Outside code spans, no tag opens: strip the spans and look for "<" not escaped.
    prose = re.sub(r"(`+).*?\1", "", out)
    assert not re.search(r"(?<!\\)<", prose)
    assert "\\<script\\>" in out
    table_rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert all(line.endswith(" |") for line in table_rows)
    # A cell keeps its column count: every unescaped "|" is a cell border.
    widths = {
        len(re.findall(r"(?<!\\)\|", line))
        for line in table_rows
        if "seq" in line or line[2:3].isdigit()
    }
    assert widths == {6}


# --- DOT and GraphML -------------------------------------------------------------------------

_DOT_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(->|[{}\[\];,=])|([A-Za-z_][A-Za-z_0-9]*))')


def _dot_tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = _DOT_TOKEN.match(text, pos)
        assert match, f"DOT does not tokenize at {text[pos : pos + 40]!r}"
        tokens.append(match.group(0).strip())
        pos = match.end()
    return tokens


def test_dot_is_well_formed_and_marks_the_path(finding: Finding) -> None:
    out = render_dot(finding)
    tokens = _dot_tokens(out)
    assert tokens.count("{") == tokens.count("}") == 3
    assert tokens.count("->") == len(finding.graph_before.edges) + len(finding.graph_after.edges)
    assert '"before:image/default/app:v1" [label="image\\napp:v1"' in out
    assert 'color="#c5221f"' in out.split('"before:image/default/app:v1" [')[1].split("\n")[0]
    # The hostile label: quotes escaped, backslash doubled, control characters visible.
    assert '<script>alert(\\"x\\")</script>' in out
    assert "\\\\x1b[31m" in out


def test_dot_single_stage_has_no_clusters(finding: Finding) -> None:
    out = render_dot(finding, "after")
    assert "cluster" not in out and '"lease/default/pull-2" [' in out
    assert "before:" not in out
    with pytest.raises(ValueError, match="which must be"):
        render_dot(finding, "during")  # type: ignore[arg-type]


def test_graphml_reads_back_with_networkx(finding: Finding) -> None:
    graphs = list(GraphMLReader()(string=render_graphml(finding)))
    assert [g.graph["stage"] for g in graphs] == ["before", "after"]
    before, after = graphs
    assert before.number_of_nodes() == 6 and before.number_of_edges() == 5
    assert after.number_of_nodes() == 4 and after.number_of_edges() == 1
    image = before.nodes["before:image/default/app:v1"]
    assert image == {
        "node_id": "image/default/app:v1",
        "kind": "image",
        "label": "app:v1",
        "present": True,
        "on_path": True,
    }
    lease = after.nodes["after:lease/default/pull-2"]
    assert lease["label"] == clean(lease["label"])
    assert lease["label"].startswith('<script>alert("x")</script> & |')
    gone = after.nodes["after:snapshot/default/native/sha256:" + "1" * 64]
    assert gone["present"] is False and gone["on_path"] is True
    edge = before.edges[
        "before:content/default/sha256:" + "c" * 64,
        "before:snapshot/default/native/sha256:" + "1" * 64,
    ]
    assert edge == {
        "kind": "label",
        "key": "containerd.io/gc.ref.snapshot.native",
        "on_path": True,
        "id": "before-e3",
    }


def test_graphml_is_valid_xml_for_one_stage(finding: Finding) -> None:
    root = ET.fromstring(render_graphml(finding, "before"))
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall("g:graph", ns)) == 1
    ids = [n.get("id") for n in root.findall("g:graph/g:node", ns)]
    assert ids == [n.id for n in finding.graph_before.nodes]


# --- HTML ------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.stack: list[str] = []
        self.mismatched: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        if tag not in ("meta", "link", "br", "img", "input", "hr"):
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.mismatched.append(tag)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


def test_html_is_self_contained_and_balanced(finding: Finding) -> None:
    out = render_html(finding)
    page = _parse(out)
    assert page.mismatched == [] and page.stack == []
    assert "script" not in page.tags and "iframe" not in page.tags
    assert page.urls == ["data:,"]  # the favicon, inline
    assert "default-src 'none'" in out
    assert not re.search(r"url\((?!#)", out), "only in-document url(#id) references"
    assert "@import" not in out and "@font-face" not in out


def test_html_escapes_every_string(finding: Finding) -> None:
    out = render_html(finding)
    assert "<script>" not in out
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; |" in out
    assert "\\x1b[31m" in out


def test_html_puts_story_program_and_replay_before_the_pictures(finding: Finding) -> None:
    out = render_html(finding)
    marks = [
        "parent_reachable_at_prepare broken",
        "What happened",
        "Actors and program",
        "Replay",
        'class="timeline"',
        'class="graph"',
        "Fault plan",
        "<h2>Trace",
    ]
    positions = [out.index(m) for m in marks]
    assert positions == sorted(positions)
    assert "<pre>unpacksim replay findings/f-0123456789ab.json</pre>" in out


def test_html_timeline_has_a_lane_per_process_and_marks_faults(finding: Finding) -> None:
    svg = render_html(finding).split('<svg class="timeline"')[1].split("</svg>")[0]
    lanes = re.findall(r'<text class="lane-name"[^>]*><title>([^<]*)</title>', svg)
    assert lanes == ["pull-2", "user", "gc", "pull-3"]
    assert svg.count('class="call ') == 7
    assert svg.count('class="call err"') == 2  # the injected Unavailable and the NotFound
    assert svg.count('class="call indet"') == 1  # pull-3's stat never completed
    assert svg.count('class="fault-band"') == 1 and svg.count('fill="url(#tl-hatch)"') == 1
    assert svg.count('class="fault-mark"') == 1
    assert ">fault content.ref_lock: Unavailable</text>" in svg
    assert svg.count('class="err-mark"') == 2


def test_html_timeline_bands_an_injected_outcome_without_a_fault_event(finding: Finding) -> None:
    bare = dataclasses.replace(finding, trace=tuple(e for e in finding.trace if e.kind != "fault"))
    svg = render_html(bare).split('<svg class="timeline"')[1].split("</svg>")[0]
    assert svg.count('class="fault-band"') == 1 and 'class="fault-mark"' not in svg
    assert ">injected Unavailable</text>" in svg


def test_html_graphs_highlight_the_path_in_both_stages(finding: Finding) -> None:
    out = render_html(finding)
    before = out.split('aria-label="reference graph before"')[1].split("</svg>")[0]
    after = out.split('aria-label="reference graph after"')[1].split("</svg>")[0]
    assert before.count('class="node path"') == 4
    assert before.count('class="edge path"') == 3
    assert after.count('class="node path missing"') == 1  # the swept snapshot
    assert after.count('class="node missing"') == 1
    # Marker ids are unique in the document even with two graphs.
    ids = re.findall(r'id="([^"]+)"', out)
    assert len(ids) == len(set(ids))


def test_html_draws_a_path_step_with_no_reference_as_missing(finding: Finding) -> None:
    a, b = GraphNode("a", "image", "app"), GraphNode("b", "content", "sha256:x")
    before = GraphData(nodes=(a, b), edges=(GraphEdge("a", "b", "target"),))
    after = GraphData(nodes=(a, b))
    odd = dataclasses.replace(finding, graph_before=before, graph_after=after, path=("a", "b"))
    after_svg = render_html(odd).split('aria-label="reference graph after"')[1].split("</svg>")[0]
    assert 'class="edge path missing"' in after_svg
    assert "path step a -&gt; b: no such reference in this graph" in after_svg


def _layout(edges: list[tuple[str, str]]) -> dict[str, int]:
    names = list(dict.fromkeys(n for e in edges for n in e))
    nodes = tuple(GraphNode(n, "content", n) for n in names)
    graph = GraphData(nodes=nodes, edges=tuple(GraphEdge(s, t, "label") for s, t in edges))
    layout = layout_graphs([graph])
    assert layout == layout_graphs([graph])
    assert sorted(layout.positions) == sorted(names)
    ys = {n: layout.positions[n][1] for n in names}
    assert all((ys[n] < ys[m]) == (layout.depth[n] < layout.depth[m]) for n in names for m in names)
    return layout.depth


def test_layout_layers_by_longest_path() -> None:
    # The layer is held by a lease (depth 1 from it) and by the image's manifest (depth 2):
    # the longer path wins, so the image's chain reads straight down.
    edges = [("lease", "layer"), ("image", "manifest"), ("manifest", "layer")]
    assert _layout(edges) == {"lease": 0, "layer": 2, "image": 0, "manifest": 1}


def test_layout_survives_a_cycle() -> None:
    depth = _layout([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    assert depth == {"a": 0, "b": 1, "c": 2, "d": 3}


# --- determinism across processes ------------------------------------------------------------

_RENDER_ALL = """
import sys
sys.path.insert(0, sys.argv[1])
from conftest import make_finding
from unpacksim.reports.formats import FORMATS, render
f = make_finding()
sys.stdout.write("".join(render(f, fmt) for fmt in FORMATS))
"""


def test_output_does_not_depend_on_the_hash_seed() -> None:
    here = str(Path(__file__).parent)
    outs = {
        subprocess.run(
            [sys.executable, "-c", _RENDER_ALL, here],
            capture_output=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
